"""Every tag name and stored file name Chassis writes to MLflow, each defined once.

Version tags carry a version's lineage and integrity; registered-model tags carry the alias
audit trail, the change in progress, the rollout record and the retrain claim.
"""

# Lineage and integrity tags every Chassis version carries.
TAG_SPEC = "chassis.spec"
TAG_DATASET_FINGERPRINT = "chassis.dataset_fingerprint"
TAG_RUN_ID = "chassis.run_id"
TAG_GIT_COMMIT = "chassis.git_commit"
TAG_ONNX_SHA256 = "chassis.onnx_sha256"
TAG_FLOW_RUN_ID = "chassis.flow_run_id"
TAG_WEIGHTS_SHA256 = "chassis.weights_sha256"
TAG_N_FEATURES = "chassis.n_features"
TAG_N_CLASSES = "chassis.n_classes"
TAG_FEATURE_COLUMNS = "chassis.feature_columns"  # JSON list, the model's input order
TAG_TASK = "chassis.task"  # chassis.task.Task; absent on versions older than the tag
TAG_N_OUTPUTS = "chassis.n_outputs"  # output width: classes, or 1 for a regressor
# A version's torch module as data (chassis.torch_program), or why it has none.
TAG_PROGRAM_SHA256 = "chassis.program_sha256"
TAG_PROGRAM_MISSING = "chassis.program_missing"
# The rows the version was judged on (its test split), so gates never need the spec again.
TAG_EVALUATION_SHA256 = "chassis.evaluation_sha256"
# A text model's input (chassis.text_input): JSON {"max_length": n, "truncate": bool}, and the
# digest of the tokenizer file stored with it. Absent on a tabular model.
TAG_TEXT_INPUT = "chassis.text_input"
TAG_TOKENIZER_SHA256 = "chassis.tokenizer_sha256"
REQUIRED_VERSION_TAGS = (TAG_SPEC, TAG_DATASET_FINGERPRINT, TAG_RUN_ID, TAG_ONNX_SHA256)

# A compressed version: the version it was made from, and how.
TAG_PARENT_VERSION = "chassis.compression.parent_version"
TAG_RECIPE = "chassis.compression.recipe"
TAG_CANDIDATE = "chassis.compression.candidate"

# A cascade version (chassis/cascade): its ONNX is the small tier's; this tag holds the
# CascadeSpec as JSON (full tier's version number, temperature, threshold, ECE before and
# after, validation escalation share and accuracy loss).
TAG_CASCADE = "chassis.cascade"

# Gate verdict, where its report is stored, and its signature (chassis.attestation).
TAG_GATES = "chassis.gates"  # "passed" or "failed", set with the gate report
TAG_GATE_REPORT = "chassis.gate_report"
TAG_ATTESTATION = "chassis.attestation"
# The live accuracy below which a classifier version no longer meets what its gates would ask
# of a challenger against it (chassis/live_accuracy.py): a number in [0, 1], set with the
# gate report. The gateway exports it (chassis_accuracy_gate_ratio) and the drift check
# judges live accuracy against it.
TAG_ACCURACY_GATE = "chassis.accuracy_gate"

# On a training run whose model equals an existing version (nothing new is registered).
TAG_UNCHANGED_FROM = "chassis.unchanged_from"
# On a version registered with the same ONNX bytes as an earlier version of its model (an
# A/A copy, or `train` run twice): the earliest such version (see registration).
TAG_IDENTICAL_TO = "chassis.identical_to"

# MLflow 3's experiment kind (its UI reads this experiment tag; unset, it may open the
# experiment in GenAI mode, on traces). Chassis's experiments hold training runs and models.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

# Registered-model tags: alias audit trail, change in progress, last crash recovery.
AUDIT_TAG_PREFIX = "chassis.audit."
TAG_INTENT = "chassis.intent"  # the alias change in progress (JSON, see aliases.Intent)
TAG_LAST_RECOVERY = "chassis.last_recovery"  # how the last interrupted change was resolved
TAG_ROLLOUT_RECORD = "chassis.rollout"  # the committed traffic split
TAG_LAST_RETRAIN = "chassis.last_retrain_at"
TAG_LAST_RETRAIN_BY = "chassis.last_retrain_by"
# What gateways do with out-of-range and missing values (chassis/sanitization.py, JSON).
TAG_SANITIZATION = "chassis.sanitization"

# The lock is a registered model named <model><LOCK_SUFFIX> with these tags.
LOCK_SUFFIX = ".chassis-lock"
TAG_LOCK_OWNER = "chassis.lock_owner"
TAG_LOCK_EXPIRES = "chassis.lock_expires"

# Files inside a version's model folder.
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "extra_files/model.safetensors"
REFERENCE_FILE = "extra_files/reference.parquet"
PROGRAM_FILE = "extra_files/program.json"
EVALUATION_FILE = "extra_files/evaluation.parquet"
TOKENIZER_FILE = "extra_files/tokenizer.json"
# Optional files a version may carry, each verified against the digest in its tag.
VERIFIED_FILES = {
    WEIGHTS_FILE: TAG_WEIGHTS_SHA256,
    PROGRAM_FILE: TAG_PROGRAM_SHA256,
    EVALUATION_FILE: TAG_EVALUATION_SHA256,
    TOKENIZER_FILE: TAG_TOKENIZER_SHA256,
}
