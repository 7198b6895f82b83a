"""The command line (``icevm``), the interactive fault shell and everything they draw.
"""
