"""Models a person can get and run: the catalog, downloads, imports, fit, and fleet policy.

* `catalog`: the curated list in the repository's `models/catalog.toml`;
* `fit`: this machine's memory and GPUs, and what a model needs at a context size;
* `policy`: the administrator's `/etc/enclave/policy.toml` (allowed models, downloads, hub);
* `lockfile`: `models.lock`, the verified hash of every model file Enclave installed;
* `download`: a pull from the hub (or a company mirror) through huggingface_hub;
* `store`: the models folder in the data folder, which ties the others together.

Nothing here reaches a network unless `download.pull` is called, which only a person's
request does (`enclave-cli models pull`, the Models page's Download button).
"""
