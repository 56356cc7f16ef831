"""The workflows the command line runs, built from the rooms below: harden, eval, reproduce, sweep."""
