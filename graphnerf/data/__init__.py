"""Zoo generation: the plan (objects x rotations x archs, splits by object), fitting in batches,
the manifest (``manifest.jsonl``) and summaries. See docs/zoo-format.md for the folder layout.

* :func:`load_zoo_config` / :class:`ZooConfig`: ``configs/data/*.yaml`` composed and validated;
* :func:`make_plan`: every NeRF job, deterministic in every process;
* :func:`generate`: fit, evaluate, save and register this shard's NeRFs (resumable);
* :func:`read_manifest` / :func:`append_record`: the manifest, safe for concurrent writers;
* :func:`summarize` / :func:`format_summary`: counts and PSNR distributions;
* :func:`fit_mesh`: one NeRF of a user's mesh.
"""

from .generate import (
    fit_mesh,
    generate,
    load_zoo_config,
    parse_rotation,
    parse_shard,
    prepare_out_dir,
    resolve_shard,
)
from .manifest import (
    IDENTITY_FIELDS,
    MANIFEST,
    METRIC_FIELDS,
    ManifestError,
    append_record,
    check_record,
    read_manifest,
)
from .plan import (
    ARCH_GROUPS,
    SPLITS,
    Batch,
    Job,
    Plan,
    ZooConfig,
    ZooConfigError,
    make_plan,
    split_sizes,
    stable_seed,
)
from .summary import distribution, format_summary, summarize

__all__ = [
    "ARCH_GROUPS",
    "IDENTITY_FIELDS",
    "MANIFEST",
    "METRIC_FIELDS",
    "SPLITS",
    "Batch",
    "Job",
    "ManifestError",
    "Plan",
    "ZooConfig",
    "ZooConfigError",
    "append_record",
    "check_record",
    "distribution",
    "fit_mesh",
    "format_summary",
    "generate",
    "load_zoo_config",
    "make_plan",
    "parse_rotation",
    "parse_shard",
    "prepare_out_dir",
    "read_manifest",
    "resolve_shard",
    "split_sizes",
    "stable_seed",
    "summarize",
]
