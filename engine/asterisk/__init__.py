"""engine.asterisk"""
