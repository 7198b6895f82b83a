"""Tools that test the device model alone: the qtest client and the qtest fuzzer.
"""
