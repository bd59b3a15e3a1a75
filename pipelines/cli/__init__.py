"""The `ppml` command line (click). One module per command group; commands only parse and print."""
