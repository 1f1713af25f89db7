"""engine.api"""
