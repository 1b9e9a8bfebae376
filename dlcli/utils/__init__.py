"""What every stage shares: `atomic` (the one way a file is written), `cache` (dlcli's cache
folder) and `plots` (every matplotlib file).
"""
