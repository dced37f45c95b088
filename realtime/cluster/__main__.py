"""Look at and steer a running cluster from any machine of it.

python -m realtime.cluster state [--cluster auto|HOST:PORT]       # hosts, streams, pending (JSON)
python -m realtime.cluster drain HOST [--cluster ...]             # move HOST's streams off it
python -m realtime.cluster stop [--cluster ...]                   # stop every stream and host
"""

from __future__ import annotations

import argparse
import json
import sys

from realtime.runtime import env as runtime_env

runtime_env.apply()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["state", "drain", "stop"])
    parser.add_argument("host", nargs="?", help="drain: the host, as named in `state`")
    parser.add_argument("--cluster", default="auto", metavar="auto|HOST:PORT")
    args = parser.parse_args(argv)
    if args.command == "drain" and not args.host:
        parser.error("drain needs the HOST to move streams off")

    import ray

    from realtime.cluster.client import ClusterError, connect
    from realtime.cluster.supervisor import NAMESPACE, SUPERVISOR_NAME

    try:
        connect(args.cluster, start_local=False)
        supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=NAMESPACE)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"error: --cluster {args.cluster}: no m2fnet-live supervisor runs there", file=sys.stderr)
        return 2
    if args.command == "state":
        print(json.dumps(ray.get(supervisor.state.remote()), indent=2))
    elif args.command == "drain":
        state = ray.get(supervisor.state.remote())
        if args.host not in state["hosts"]:
            known = ", ".join(state["hosts"]) or "none"
            print(f"error: no host {args.host!r} in the cluster (hosts: {known})", file=sys.stderr)
            return 2
        moved = ray.get(supervisor.drain.remote(args.host))
        print(f"{args.host}: {len(moved)} stream(s) moving: {', '.join(moved) or '-'}")
    else:
        try:
            ray.get(supervisor.shutdown.remote())
        except ray.exceptions.RayActorError:
            pass  # it ends itself
        print("cluster: every stream and host stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
