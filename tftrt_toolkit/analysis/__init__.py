"""What we learn about a graph without running it: a layer between backends and models.

``precision_coverage``: the share of a converted graph's multiply-adds in its target precision.
"""
