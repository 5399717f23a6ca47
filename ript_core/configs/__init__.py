"""Training configs shipped with ript-core (read with ``importlib.resources``)."""

#: the embedded default that ``ript demo`` trains
DEMO_CONFIG = "toy_demo.yaml"
