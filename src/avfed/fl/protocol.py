"""What travels in messages between the ServerApp and ClientApps.

The server ships the whole resolved run config with every training message (and every
evaluation message, when clients evaluate). Clients therefore need no local copy of the
recipe: the same ClientApp works under the simulation engine and on a real SuperNode,
and can never train with a config that differs from the server's.
"""

from __future__ import annotations

import json

from flwr.app import ConfigRecord

from avfed.config import RunConfig, config_from_dict, to_dict
from avfed.rounds import EVAL_BOOKKEEPING as EVAL_BOOKKEEPING
from avfed.rounds import LOSS_KEY as LOSS_KEY
from avfed.rounds import NO_TEST_DATA_KEY as NO_TEST_DATA_KEY
from avfed.rounds import PARTITION_KEY as PARTITION_KEY
from avfed.rounds import WEIGHT_KEY as WEIGHT_KEY

# record names inside a message's RecordDict
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

# train-config entries
CONFIG_KEY = "avfed-config"  # the resolved run config, as JSON
SERVER_ROUND_KEY = "server-round"  # set by Flower's strategies
CLIENT_UPDATE_KEY = "client-update"  # the client merge rule (avfed.fl.client_merge)
PARTIAL_PREFIXES_KEY = "partial-update-prefixes"
FEDEMA_TAU_KEY = "fedema-tau"
FEDEMA_LAMBDA_KEY = "fedema-lambda"
FEDU_THRESHOLD_KEY = "fedu-threshold"
PREDICTOR_PREFIX_KEY = "predictor-prefix"
PROXIMAL_MU_KEY = "proximal-mu"  # Flower's FedProx sends this

# the metrics a client reply carries are named where every round is booked:
# avfed.rounds (LOSS_KEY, PARTITION_KEY, WEIGHT_KEY), re-exported here. An evaluation
# reply carries the task's scores, WEIGHT_KEY (the client's held-out examples) and
# PARTITION_KEY, or NO_TEST_DATA_KEY = 1 from a client that holds no held-out example.


def config_record(cfg: RunConfig) -> ConfigRecord:
    return ConfigRecord({CONFIG_KEY: json.dumps(to_dict(cfg), sort_keys=True)})


def config_from_record(record: ConfigRecord) -> RunConfig:
    if CONFIG_KEY not in record:
        raise ValueError(
            f"message config has no '{CONFIG_KEY}' entry; was it sent by avfed's ServerApp?"
        )
    return config_from_dict(json.loads(str(record[CONFIG_KEY])))
