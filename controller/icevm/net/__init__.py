"""Frames on the e810's wire: the socket netdev backend, packet builders and parsers, pcap
files, and the RSS hash the device computes.
"""
