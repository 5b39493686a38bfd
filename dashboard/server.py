"""The Streamlit process of ``lossboard serve``: ``python -m lossboard.dashboard.server run APP``.

The same as ``python -m streamlit run APP`` except for one thing. The pages live in
``dashboard/pages/``, and a folder of that name next to the entry script puts Streamlit in its
old pages-directory mode until ``st.navigation`` has run once in the process. So the first
visit after a start to a page's own URL (``/executive``, a shared link) would run that page
alone, without ``app.py``: no sidebar, no Filter. ``app.py`` always calls ``st.navigation``;
telling Streamlit so before the first session makes every visit run it.
"""

from __future__ import annotations

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web.cli import main

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False
    main(prog_name="streamlit")
