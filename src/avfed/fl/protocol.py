"""What travels in messages between the ServerApp and ClientApps.

The server ships the whole resolved run config with every training message. Clients
therefore need no local copy of the recipe: the same ClientApp works under the
simulation engine and on a real SuperNode, and can never train with a config that
differs from the server's.
"""

from __future__ import annotations

import json

from flwr.app import ConfigRecord

from avfed.config import RunConfig, config_from_dict, to_dict

CONFIG_KEY = "avfed-config"
WEIGHT_KEY = "num-examples"


def config_record(cfg: RunConfig) -> ConfigRecord:
    return ConfigRecord({CONFIG_KEY: json.dumps(to_dict(cfg), sort_keys=True)})


def config_from_record(record: ConfigRecord) -> RunConfig:
    if CONFIG_KEY not in record:
        raise ValueError(
            f"training message has no '{CONFIG_KEY}' entry; was it sent by avfed's ServerApp?"
        )
    return config_from_dict(json.loads(str(record[CONFIG_KEY])))
