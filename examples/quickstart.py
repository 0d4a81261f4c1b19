"""Quick start: build, save, reload, export to tiny-cuda-nn, convert to a graph, render.

python examples/quickstart.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import graphnerf
from graphnerf.render import eval_cameras, psnr, render_image, save_png


def main(out_dir: str = "quickstart_out") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    field = graphnerf.build_field("hash", seed=0)  # any of graphnerf.ZOO, or a FieldSpec
    x = torch.rand(1024, 3) * 1.4 - 0.7  # world coordinates inside the AABB [-0.7, 0.7]^3
    sigma, rgb = field(x)
    print(f"{field.spec.family}: {field.spec.n_params:,} parameters; sigma {tuple(sigma.shape)}")

    path = graphnerf.save_field(
        field, out / "hash.safetensors", object_id="demo_0", rotation=[1, 0, 0, 0]
    )
    field = graphnerf.load_field(path)  # spec and metadata come from the file alone
    print("metadata:", field.meta)

    params = graphnerf.io.export_tcnn(field)  # tiny-cuda-nn / gmnerf flat layout
    torch.save(params, out / "nerf_weights.pth")
    again = graphnerf.io.import_tcnn(out / "nerf_weights.pth")  # spec inferred from the sizes

    g = graphnerf.to_graph(field)  # torch_geometric.data.Data
    same = graphnerf.from_graph(g)
    print(f"graph: {g.num_nodes:,} nodes, {g.edge_index.shape[1]:,} edges")

    cam = eval_cameras(64, 64)[0]
    image = render_image(field, cam, n_samples=64)
    for name, other in (("tcnn re-import", again), ("graph round trip", same)):
        print(
            f"{name}: PSNR vs original render = {float(psnr(render_image(other, cam, n_samples=64), image))}"
        )
    save_png(image, out / "hash.png")
    print(f"wrote {out / 'hash.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
