"""Plotly figure builders: a small frame in, a figure out. No SQL, no Streamlit.

Conventions every builder follows (so pages look alike and tests can rely on them):

* axis titles carry units ("log loss (nats)", "time (UTC)", "fraction of scores");
* hover shows the value *and* its ``n``;
* low-confidence points (``low_confidence`` column True, n below the minimum) are drawn as
  hollow markers in a separate trace named ``LOW_CONFIDENCE_NAME``, so they are visibly
  different and a test can find them;
* a marked moment (incident start, "since when") is a vertical line with an annotation;
* the figure is self-contained: no external fonts, images or map tiles.
"""

from __future__ import annotations

import plotly.graph_objects as go

LOW_CONFIDENCE_NAME = "low confidence (n below minimum)"
TEMPLATE = "plotly_white"


def base_layout(fig: go.Figure, *, x_title: str, y_title: str, height: int = 360) -> go.Figure:
    """Common layout: white template, titled axes, legend on top, compact margins."""
    fig.update_layout(template=TEMPLATE, height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      hovermode="x unified")
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig
