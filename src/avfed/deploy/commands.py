"""The command lines of a federation, for local processes or for real machines.

One :class:`FederationPlan` says where the SuperLink listens, how many SuperNodes there
are and how each is configured; the functions below turn it into the exact commands.
``avfed federate`` runs them on this machine; ``--print-commands`` prints them for
machines of your own. Every process is told not to install dependencies at run time,
by flag and by environment: otherwise the SuperLink builds a per-run environment with
``uv sync`` from the app's pyproject, which for a torch app downloads gigabytes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

# the environment every federation process gets (a separately started SuperLink does not
# see what the `flwr run` shell has set)
RUNTIME_ENV = {"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
CONNECTION = "avfed"  # the connection's name in $FLWR_HOME/config.toml
APP_CONFIG_KEYS = ("recipe", "overrides", "resume", "run-dir")


@dataclass
class FederationPlan:
    """A SuperLink and ``nodes`` SuperNodes.

    ``host``/``port``: where the SuperLink listens (Fleet, Control and runtime APIs share
    the port); ``link_address``: how the nodes reach it (the host by default);
    ``node_ports``: each SuperNode's own runtime port (distinct on one machine);
    ``tls_dir``: certificates from :func:`avfed.deploy.certs.make_certificates` (TLS on
    when set); ``auth``: SuperNode authentication with the keys in ``tls_dir/keys``;
    ``data_roots``: per node, a folder of its own data (node-local data), or ``None``.
    """

    nodes: int = 3
    host: str = "127.0.0.1"
    port: int = 9191
    node_ports: list[int] = field(default_factory=list)
    link_address: str | None = None
    tls_dir: Path | None = None
    auth: bool = False
    data_roots: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"--nodes must be >= 1, got {self.nodes}")
        if not self.node_ports:
            self.node_ports = [self.port + 10 + i for i in range(self.nodes)]
        if len(self.node_ports) != self.nodes or len(set(self.node_ports)) != self.nodes:
            raise ValueError(f"need {self.nodes} distinct SuperNode ports, got {self.node_ports}")
        if self.port in self.node_ports:
            raise ValueError(f"SuperLink port {self.port} is also a SuperNode port")
        if not self.data_roots:
            self.data_roots = [None] * self.nodes
        if len(self.data_roots) != self.nodes:
            raise ValueError(f"{len(self.data_roots)} data roots for {self.nodes} nodes")
        if self.auth and self.tls_dir is None:
            raise ValueError("SuperNode authentication needs TLS (--tls)")

    @property
    def address(self) -> str:
        return f"{self.link_address or self.host}:{self.port}"

    def cert(self, name: str) -> str:
        assert self.tls_dir is not None
        return str(Path(self.tls_dir).resolve() / name)

    def node_key(self, i: int) -> str:
        return self.cert(f"keys/supernode_{i}")


def superlink_command(plan: FederationPlan) -> list[str]:
    command = ["flower-superlink", "--host", plan.host, "--port", str(plan.port),
               "--disable-runtime-dependency-installation"]
    if plan.tls_dir is None:
        return [*command, "--insecure"]
    command += ["--ssl-ca-certfile", plan.cert("ca.crt"), "--ssl-certfile",
                plan.cert("server.pem"), "--ssl-keyfile", plan.cert("server.key")]
    return [*command, "--enable-supernode-auth"] if plan.auth else command


def node_config(plan: FederationPlan, i: int) -> str:
    """``partition-id=i num-partitions=n`` (and ``data-root="…"`` for node-local data)."""
    items = [f"partition-id={i}", f"num-partitions={plan.nodes}"]
    if plan.data_roots[i]:
        items.append(f'data-root="{Path(plan.data_roots[i]).resolve()}"')
    return " ".join(items)


def supernode_command(plan: FederationPlan, i: int) -> list[str]:
    command = ["flower-supernode", "--superlink", plan.address, "--port",
               str(plan.node_ports[i]), "--node-config", node_config(plan, i)]
    if plan.tls_dir is None:
        return [*command, "--insecure"]
    command += ["--root-certificates", plan.cert("ca.crt")]
    if plan.auth:
        command += ["--auth-supernode-private-key", plan.node_key(i)]
    return command


def register_command(plan: FederationPlan, i: int) -> list[str]:
    """Register node ``i``'s public key with the SuperLink (SuperNode authentication)."""
    return ["flwr", "supernode", "register", plan.node_key(i) + ".pub", CONNECTION]


def connection_toml(plan: FederationPlan) -> str:
    """``$FLWR_HOME/config.toml``: how ``flwr`` reaches the SuperLink's Control API."""
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]",
             f'address = "{plan.address}"']
    if plan.tls_dir is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{plan.cert("ca.crt")}"')
    return "\n".join(lines) + "\n"


def app_pyproject() -> str:
    """A Flower app that runs the installed avfed: ``flwr run`` ships only this file
    (the code is installed on every machine; nothing is installed at run time)."""
    config = "\n".join(f'{key} = ""' for key in APP_CONFIG_KEYS if key != "recipe")
    return f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "avfed-federation"
version = "1.0.0"
description = "avfed recipes on a Flower federation"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "avfed"

[tool.flwr.app.components]
serverapp = "avfed.fl.server_app:app"
clientapp = "avfed.fl.client_app:app"

[tool.flwr.app.config]
recipe = "simclr_digits"
{config}
'''


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_config(recipe: str, overrides: list[str], run_dir: str | None = None,
               resume: str | None = None) -> str:
    """The ``--run-config`` of ``flwr run``: the recipe and overrides travel to the
    ServerApp, which builds the run (and ships the resolved config to the clients)."""
    items = {"recipe": recipe, "overrides": shlex.join(overrides)}
    if run_dir:
        items["run-dir"] = run_dir
    if resume:
        items["resume"] = resume
    return " ".join(f"{key}={toml_string(value)}" for key, value in items.items())


def flwr_run_command(app_dir: str, recipe: str, overrides: list[str],
                     run_dir: str | None = None, resume: str | None = None) -> list[str]:
    return ["flwr", "run", app_dir, CONNECTION, "--stream", "--run-config",
            run_config(recipe, overrides, run_dir, resume)]


def printed_commands(plan: FederationPlan, recipe: str, overrides: list[str]) -> str:
    """Every command of the federation, machine by machine, as a user copies them."""
    env = " ".join(f"{k}={v}" for k, v in RUNTIME_ENV.items())
    lines = ["# On the SuperLink machine (serves Fleet, Control and runtime on one port;",
             f"# open TCP {plan.port} to the SuperNodes and to where you run `flwr run`):",
             f"{env} {shlex.join(superlink_command(plan))}", ""]
    if plan.auth:
        lines += ["# Register each SuperNode's public key (from where `flwr` is configured):",
                  *[shlex.join(register_command(plan, i)) for i in range(plan.nodes)], ""]
    for i in range(plan.nodes):
        lines += [f"# On SuperNode machine {i} (its runtime port {plan.node_ports[i]} is local"
                  " to it):", f"{env} {shlex.join(supernode_command(plan, i))}", ""]
    lines += ["# Where you start runs: $FLWR_HOME/config.toml (default ~/.flwr/config.toml)",
              *[f"#   {line}" for line in connection_toml(plan).splitlines()],
              "# and a folder holding the app's pyproject.toml (avfed federate "
              "--print-app DIR writes one):",
              shlex.join(flwr_run_command("APP_DIR", recipe, overrides))]
    return "\n".join(lines)
