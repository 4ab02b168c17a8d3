"""``servopt import helix CONFIG.ini THROUGHPUT_TABLE --out FILE``: a Helix cluster file as an instance.

Registers the ``import`` command (or joins it, when another module already made it) with the
sub-command ``helix``. The reader is ``servopt.instances.helix_ini``.
"""
from __future__ import annotations


def register(subparsers) -> None:
    from servopt.commands._common import import_subparsers

    sub = import_subparsers(subparsers)
    p = sub.add_parser("helix", help="a Helix (ASPLOS'25) cluster INI + throughput table -> layer_placement JSON")
    p.add_argument("config", help="Helix cluster file (.ini): [NodeNames], [SourceNode], [ComputeNode-i], [Link-a-b]")
    p.add_argument("throughput_table", help="JSON {num_layers, activation_bytes_per_token, throughput_tokens_per_s: "
                   "{type: [T(1)..T(K)]}} or CSV type,num_layers_held,tokens_per_s")
    p.add_argument("--out", required=True, metavar="FILE", help="instance JSON to write")
    p.add_argument("--num-layers", type=int, default=None, help="model layers (if the table does not say)")
    p.add_argument("--activation-bytes", type=float, default=None,
                   help="bytes per token between nodes, hidden size x 2 (if the table does not say)")
    p.add_argument("--units", choices=("helix", "strict"), default="helix",
                   help="helix: reproduce Helix's capacities (its 'mbps' read as 1e6 bytes); strict: bits / 8")
    p.add_argument("--name", default=None, help="instance name (default: the INI's file name)")
    p.set_defaults(func=run)


def run(args) -> int:
    from servopt import jsonio
    from servopt.errors import InputError
    from servopt.instances.helix_ini import import_cluster, read_throughput_table
    from servopt.kinds import layer_placement

    if args.num_layers is not None and args.num_layers < 1:
        raise InputError("--num-layers", "must be >= 1")
    if args.activation_bytes is not None and not args.activation_bytes > 0:
        raise InputError("--activation-bytes", "must be > 0")
    table = read_throughput_table(args.throughput_table, num_layers=args.num_layers,
                                  activation_bytes=args.activation_bytes)
    data = import_cluster(args.config, table, units=args.units, name=args.name)
    inst = layer_placement.load(data)  # the same checks as any instance file
    jsonio.write_json(data, args.out)
    print(f"wrote {args.out}: {len(inst.nodes)} nodes, {len(inst.links)} links, {inst.num_layers} layers")
    return 0
