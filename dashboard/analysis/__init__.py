"""lossboard.dashboard.analysis"""
