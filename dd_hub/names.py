"""The names of the files and folders dd-hub writes, in one place."""

# a model directory, in timm's Hub format plus dd-hub's measurements
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"            # what was trained and measured, with the hashes of the files beside it
CARD_NAME = "README.md"                  # the model card
CURVE_NAME = "robustness_curve.png"      # accuracy against epsilon, the card's figure
TRAINING_NAME = "training_curve.png"     # the training log's accuracy and rho_2 per epoch

# a run's output folder, around the model directory
SETTINGS_NAME = "run.json"               # the run's settings, compared on --resume
TRAIN_LOG_NAME = "train_log.jsonl"
CHECKPOINTS_DIR = "checkpoints"
REFERENCE_DIR = "reference"              # the reference model a run trained
LOCK_NAME = ".dd-hub.lock"
STAGING_DIR = ".staging"
COMMIT_NAME = "COMMIT"

# dd-hub reproduce / sweep
RESULTS_NAME = "results.json"
TABLE_NAME = "table.md"
SWEEP_NAME = "sweep.json"
SWEEP_TABLE_NAME = "sweep.md"
SWEEP_PLOT_NAME = "sweep.png"

# model_cards/ and the site
INDEX_NAME = "index.md"
SITE_MARKER = ".dd-hub-site"
