"""`python -m hf_slm.spaces SPACE [--host H] [--port P] ...`: run one of the zoo's Spaces locally."""

from __future__ import annotations

import argparse
import os

# `python -m` has imported hf_slm (and huggingface_hub) before this runs: set HF_HUB_OFFLINE=1 in the
# shell to forbid the network. The zoo's folders and the local HF cache load without it anyway.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main(argv: list[str] | None = None) -> None:
    from hf_slm.spaces import DEFAULT_CONCURRENCY, DEFAULT_MAX_SECONDS, DEFAULT_QUEUE_SIZE, SPACES, build_demo
    from hf_slm.spaces import launch as launch_demo

    parser = argparse.ArgumentParser(prog="python -m hf_slm.spaces", description=__doc__)
    parser.add_argument("space", choices=sorted(SPACES), help="which Space to run")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument(
        "--model", help="model folder or Hub id (single-model Spaces; default: resolve_model)"
    )
    parser.add_argument(
        "--examples", help="folder of example clips (default: the repository's spaces/<space>/examples)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="longest clip accepted"
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests run at once")
    parser.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE, help="requests that may wait")
    args = parser.parse_args(argv)
    kwargs = {"examples": args.examples, "max_seconds": args.max_seconds,
              "concurrency_limit": args.concurrency, "max_queue_size": args.queue_size}  # fmt: skip
    if args.model:
        if args.space == "slm-zoo":
            parser.error("--model is for the single-model Spaces; slm-zoo takes HF_SLM_ZOO=FOLDER instead")
        kwargs["model"] = args.model
    launch_demo(build_demo(args.space, **kwargs), examples=args.examples, server_name=args.host,
                server_port=args.port)  # fmt: skip


if __name__ == "__main__":
    main()
