"""engine.domain"""
