"""lossboard.dashboard.pages"""
