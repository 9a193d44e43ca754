"""Open the FiftyOne App on the Lensline dataset, bound to 127.0.0.1 (``make app``)."""

import argparse

from lake.resources import FiftyOneResource


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="lensline")
    ap.add_argument("--port", type=int, default=5151)
    args = ap.parse_args()
    FiftyOneResource(dataset_name=args.dataset).connect()
    import fiftyone as fo

    if args.dataset not in fo.list_datasets():
        raise SystemExit(
            f"no FiftyOne dataset {args.dataset!r} yet: run `make demo` (or `lensline run`) first"
        )
    dataset = fo.load_dataset(args.dataset)
    print(
        f"{dataset.name}: {len(dataset)} samples; saved views: {', '.join(dataset.list_saved_views())}"
    )
    session = fo.launch_app(dataset, address="127.0.0.1", port=args.port, remote=True)
    print(f"FiftyOne App on http://127.0.0.1:{args.port}  (Ctrl-C to stop)")
    session.wait(-1)


if __name__ == "__main__":
    main()
