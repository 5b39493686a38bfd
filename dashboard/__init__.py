"""lossboard.dashboard"""
