"""lossboard.ingest"""
