"""The Hugging Face Hub side: model cards and their figures, the Hub client, publishing, loading published
checkpoints, reading cards (Hub or local), leaderboards and the static site."""
