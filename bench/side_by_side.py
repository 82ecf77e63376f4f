"""Prints one workload's figures of Hearth and Synapse side by side (hearth-bench --json
outputs), with how many times better Hearth is: the ratio of the two, turned so that above
1 means Hearth did better (more per second, or fewer milliseconds, MiB or % CPU)."""

import json
import sys

HIGHER_IS_BETTER = {"messages/s", "MiB/s"}


def main() -> None:
    workload, hearth_path, synapse_path = sys.argv[1:4]
    with open(hearth_path) as f:
        hearth = {figure["name"]: figure for figure in json.load(f)}
    with open(synapse_path) as f:
        synapse = {figure["name"]: figure for figure in json.load(f)}
    print(f"\n{workload}")
    print(f"{'figure':<56} {'Hearth':>10} {'Synapse':>10} {'unit':<10} {'Hearth better':>13}")
    for name, figure in hearth.items():
        other = synapse.get(name)
        mine = figure["value"]
        theirs = other["value"] if other else None
        ratio = ""
        # The load generator's CPU tells whether the tool kept up, not which server is better.
        if theirs is not None and mine > 0 and theirs > 0 and not name.startswith("load generator"):
            value = mine / theirs if figure["unit"] in HIGHER_IS_BETTER else theirs / mine
            ratio = f"{value:.1f}x"
        shown = f"{theirs:10.2f}" if theirs is not None else f"{'-':>10}"
        print(f"{name:<56} {mine:10.2f} {shown} {figure['unit']:<10} {ratio:>13}")


if __name__ == "__main__":
    main()
