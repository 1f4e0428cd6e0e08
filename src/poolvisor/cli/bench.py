"""`poolvisor bench ...`: performance figures printed as a table or JSON (never asserted in tests).

Each area adds its own command here, delegating to a function in its own module.
"""

from __future__ import annotations

import typer

from poolvisor.cli.parse import number

app = typer.Typer(help="Benchmarks: print measured figures and ratios.", no_args_is_help=True)


@app.command("packing")
def packing(
    source: str = typer.Argument(..., help="directory of .vbp files or a .tar.gz of them (Panigrahy)"),
    time_limit: float = typer.Option(1.0, "--time-limit", help="seconds per instance (all stages)",
        parser=number),
    algo: str = typer.Option("best", "--algo", help="algorithm (see `poolvisor pack --help`)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON (summary per class and dimension)"),
    per_instance: bool = typer.Option(False, "--per-instance", help="with --json: add every instance"),
    limit: int = typer.Option(0, "--limit", help="run N instances spread over all classes and sizes"),
    classes: str = typer.Option("", "--classes", help="comma-separated class numbers, e.g. 1,6,7"),
    known: str = typer.Option("", "--known", help="Panigrahy_summary_known.csv (default: next to SOURCE)"),
    workers: int = typer.Option(0, "--workers", help="processes (default: all local cores)"),
    markdown: bool = typer.Option(False, "--markdown", help="print Markdown tables (for docs)"),
    save: str = typer.Option("", "--save", help="also write the JSON (with every instance) to this file"),
) -> None:
    """Vector bin packing quality vs the best published results (Panigrahy instances)."""
    import json
    import os
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from poolvisor.bench import packing as bp
    from poolvisor.cli.errors import fail
    from poolvisor.policies.packing.registry import algorithms

    if algo not in algorithms():
        raise fail(f"unknown algorithm {algo!r}; known: {', '.join(algorithms())}")
    try:
        cls = {int(c) for c in classes.split(",") if c.strip()} if classes else None
    except ValueError:
        raise fail(f"--classes must be comma-separated integers, got {classes!r}") from None
    src = Path(source)
    known_path = Path(known) if known else bp.default_known(src)
    ref = bp.read_known(known_path) if known_path else None
    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=as_json) as prog:
        task = prog.add_task("packing", total=None)
        results = bp.run(src, algo=algo, time_limit=time_limit, classes=cls, limit=limit or None,
                         workers=workers or None,
                         progress=lambda d, t: prog.update(task, completed=d, total=t))
    by_class = bp.summarize(results, ref, "class")
    by_dim = bp.summarize(results, ref, "dimensions")
    total = bp.summarize([{**r, "all": 0} for r in results], ref, "all")[0]
    out: dict[str, object] = {"algo": algo, "time_limit": time_limit, "instances": len(results),
                              "workers": workers or os.cpu_count(),
                              "known": str(known_path) if known_path else None, "by_class": by_class,
                              "by_dimensions": by_dim, "total": total}
    if save:
        Path(save).write_text(json.dumps({**out, "results": results}))
    if as_json:
        if per_instance:
            out["results"] = results
        typer.echo(json.dumps(out))
        return
    if markdown:
        typer.echo(bp.markdown(by_class, "class") + "\n\n" + bp.markdown(by_dim, "dimensions") + "\n\n"
                   + bp.markdown([total], "all"))
        return
    out_console = Console()
    if ref is None:
        out_console.print("no Panigrahy_summary_known.csv found: published comparison omitted (use --known)")
    out_console.print(bp.render(by_class, "class", f"{algo}, {time_limit:g} s/instance, by class"))
    out_console.print(bp.render(by_dim, "dimensions", "by dimensions"))
    out_console.print(bp.render([total], "all", "all instances"))


@app.command("simulate")
def simulate(
    trace_dir: str = typer.Argument(
        "", help="PlanetLab day directory (default: the shared data's 20110303, or $POOLVISOR_SHARED_DATA)"
    ),
    repeat: int = typer.Option(3, "--repeat", min=1, help="runs; the best wall time is reported"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """One PlanetLab day, LR-MMT-1.2, CloudSim-compatible mode: wall time and speed-up over CloudSim."""
    import json
    import os
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from poolvisor.bench import simulate as bs

    if not trace_dir:
        here = Path(__file__).resolve().parents[4] / "shared" / "data"
        shared = Path(os.environ.get("POOLVISOR_SHARED_DATA", here))
        trace_dir = str(shared / "planetlab" / "20110303")
    out = bs.run(trace_dir, repeat=repeat)
    if as_json:
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"simulate: {out['policy']} on {Path(out['trace']).name} (compat cloudsim)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("hosts / VMs", f"{out['hosts']} / {out['vms']}")
    table.add_row("migrations", f"{out['migrations']:,}")
    table.add_row("energy (kWh)", f"{out['energy_kwh']:.2f}")
    table.add_row(f"wall time, best of {out['runs']} (s)", f"{out['wall_s']:.2f}")
    table.add_row("CPU time (s)", f"{out['cpu_s']:.2f}")
    table.add_row("CloudSim, idle machine (s)", f"{out['cloudsim_idle_wall_s']:.1f}")
    table.add_row("speed-up vs idle CloudSim", f"{out['speedup_vs_idle']:.1f}x")
    if out["cloudsim_wall_s"]:
        table.add_row("CloudSim, reference CSV run (s)", f"{out['cloudsim_wall_s']:.1f}")
        table.add_row("speed-up vs that run", f"{out['speedup_vs_reference_csv']:.1f}x")
    Console().print(table)


@app.command("placement")
def placement(
    hosts: int = typer.Option(100_000, "--hosts", help="hosts in the synthetic cluster"),
    requests: int = typer.Option(100_000, "--requests", help="requests placed one after another"),
    seed: int = typer.Option(1, "--seed", help="random seed (cluster, requests)"),
    churn: float = typer.Option(0.0, "--churn", help="probability of releasing an earlier placement first",
        parser=number),
    verify: int = typer.Option(200, "--verify", help="extra requests checked against pipeline.place"),
    floor_requests: int = typer.Option(2000, "--floor-requests", help="requests timed for the scan floor"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Sequential placements through the full filter+scorer policy (indexed), vs a bare scan floor."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from poolvisor.bench import placement as bp
    from poolvisor.cli.errors import fail

    if not 1 <= hosts <= 10_000_000 or not 1 <= requests <= 100_000_000:
        raise fail("--hosts must be in 1..10,000,000 and --requests in 1..100,000,000")
    if not 0.0 <= churn < 1.0 or verify < 0 or floor_requests < 1:
        raise fail("--churn must be in [0, 1), --verify >= 0, --floor-requests >= 1")
    cfg = bp.BenchConfig(hosts, requests, seed, churn, verify, floor_requests)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), disable=as_json) as prog:
        task = prog.add_task("building cluster", total=requests)
        res = bp.run(cfg, progress=lambda stage, done, total: prog.update(task, description=stage,
                                                                          completed=done, total=total))
    if as_json:
        typer.echo(json.dumps(res))
        return
    Console().print(bp.render(res))


@app.command("gpu-placement")
def gpu_placement(
    hosts: int = typer.Option(1000, "--hosts", min=1, max=100_000, help="GPU hosts (8, 4 or 2 GPUs)"),
    requests: int = typer.Option(5000, "--requests", min=1, max=10_000_000, help="decisions timed in memory"),
    store_hosts: int = typer.Option(100, "--store-hosts", min=1, max=10_000, help="hosts of the store run"),
    store_creates: int = typer.Option(300, "--store-creates", min=0, max=1_000_000,
                                      help="workloads created through the services (0: skip)"),
    seed: int = typer.Option(1, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Shared-GPU placement with the fgd-ri policy: served decisions per second, store creates per second."""
    import json

    from poolvisor.bench import gpu_placement as bg
    from poolvisor.cli.render import table

    out = bg.run(hosts, requests, store_hosts, store_creates, seed)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    table("GPU placement benchmark (fgd-ri)", ("figure", "value"),
          [(k, f"{v:,.4g}" if isinstance(v, float) else str(v)) for k, v in out.items()])


@app.command("simulate-scale")
def simulate_scale(
    days: list[str] | None = typer.Argument(
        None, help="PlanetLab day directories to resample (default: the shared data's three days)"
    ),
    vms: int = typer.Option(100_000, "--vms", help="synthetic VMs"),
    hosts: int = typer.Option(10_000, "--hosts", help="hosts (16 PEs, 32 GiB each)"),
    policy: str = typer.Option("thr-mmt", "--policy", help="consolidation policy"),
    param: float | None = typer.Option(None, "--param", help="policy parameter (default: the policy's)",
        parser=number),
    seed: int = typer.Option(0, "--seed"),
    underload_limit: int | None = typer.Option(
        None, "--underload-limit", help="max underloaded hosts tried per epoch (default: all, as CloudSim)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """N synthetic VMs (resampled PlanetLab shapes) on H hosts for one day: wall time and peak RSS."""
    import json
    import os
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from poolvisor.bench import sim_scale
    from poolvisor.cli.errors import fail

    if not days:
        here = Path(__file__).resolve().parents[4] / "shared" / "data"
        root = Path(os.environ.get("POOLVISOR_SHARED_DATA", here)) / "planetlab"
        if not root.is_dir():
            raise fail(f"no PlanetLab data at {root}: pass day directories")
        days = sorted(str(p) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    with Progress("simulate", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=as_json, transient=True) as prog:
        task = prog.add_task("epochs", total=None)
        out = sim_scale.run_scale(
            days, vms=vms, hosts=hosts, policy=policy, param=param, seed=seed,
            underload_limit=underload_limit,
            progress=lambda k, n: prog.update(task, completed=k, total=n),
        )
    if as_json:
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"simulate-scale: {out['vms']:,} VMs on {out['hosts']:,} hosts, {out['policy']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in out.items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)


@app.command("store")
def store(
    db: str = typer.Option("", "--db", help="an EMPTY database URL (default: a temporary SQLite file)"),
    hosts: int = typer.Option(20, "--hosts", help="demo hosts to seed"),
    requests: int = typer.Option(300, "--requests", help="workloads to create in total"),
    threads: int = typer.Option(4, "--threads", help="threads per process"),
    processes: int = typer.Option(0, "--processes", help="extra client processes"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Concurrent workload creation through the services layer: rate and invariant check."""
    import json

    from rich.console import Console
    from rich.table import Table

    from poolvisor.bench.loadgen import bench_store
    from poolvisor.cli.errors import fail

    if hosts < 1 or requests < 1 or threads < 1 or processes < 0:
        raise fail("--hosts, --requests and --threads must be >= 1, --processes >= 0")
    res = bench_store(db or None, hosts, requests, threads, processes)
    if as_json:
        typer.echo(json.dumps(res))
    else:
        table = Table(title="poolvisor bench store")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for k, v in res.items():
            table.add_row(k, str(v))
        Console().print(table)
    if not res["invariants_ok"]:
        raise typer.Exit(1)


@app.command("network")
def network(
    routers: int = typer.Option(1000, "--routers", min=2, help="routers of the link-state graph"),
    prefixes: int = typer.Option(10_000, "--prefixes", min=1, help="prefixes (routes and LPM table)"),
    lookups: int = typer.Option(1_000_000, "--lookups", min=1, help="batched longest-prefix lookups"),
    dv_routers: int = typer.Option(200, "--dv-routers", min=2, help="routers of the distance-vector run"),
    allocations: int = typer.Option(1000, "--allocations", min=1,
                                    help="IPAM allocations, one per transaction"),
    block: int = typer.Option(100_000, "--block", min=1, help="addresses in one block allocation"),
    in_tx: int = typer.Option(5000, "--in-tx", min=1, help="single allocations inside one transaction"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Routing (link-state, re-convergence, distance-vector rounds), LPM lookups and IPAM figures."""
    import json

    from poolvisor.bench import network as bn
    from poolvisor.cli.render import say, table

    out = bn.run(routers, prefixes, lookups, dv_routers, allocations, block, in_tx)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    table("Network benchmark", ("figure", "value"),
          [(k, f"{v:,.4g}" if isinstance(v, float) else str(v)) for k, v in out.items()])
    say("[dim]goals: route_compute_s < 1, lookups_per_s >= 1e6 (1e7 batched)[/dim]")


@app.command("storage")
def storage(
    size_mib: int = typer.Option(32, "--size-mib", help="MiB written per throughput round (x3 replicas)"),
    rounds: int = typer.Option(5, "--rounds", help="raw/replicated write rounds; the best of each is kept"),
    tmp: str = typer.Option("", "--tmp", help="directory for the temporary devices (default: system temp)"),
    volume_gib: int = typer.Option(100, "--volume-gib", help="size of each of the 8 volumes of the service "
                                   "rebalance run (256 MiB segments)"),
    io_mib: int = typer.Option(16, "--io-mib", help="MiB per call of the split_* write/read through the "
                              "volume service (write_mb_s writes the whole size in one call)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Rebalance movement vs the ideal (policy, and through the store's VolumeService); volume
    write/read MB/s through VolumeService (replication 3, `dir` devices) vs raw, the standalone
    DirStore's too; a device killed during writes (acknowledged bytes lost)."""
    import json

    from poolvisor.bench import storage as bst
    from poolvisor.cli.errors import fail
    from poolvisor.cli.render import table

    if not 1 <= size_mib <= 4096 or not 1 <= rounds <= 20 or not 1 <= volume_gib <= 1000 \
            or not 1 <= io_mib <= 64:
        raise fail("--size-mib must be in 1..4096, --rounds in 1..20, --volume-gib in 1..1000 "
                   "and --io-mib in 1..64")
    try:
        res = bst.run(size_mib=size_mib, rounds=rounds, tmp=tmp or None, volume_gib=volume_gib,
                      io_mib=io_mib)
    except OSError as e:
        raise fail(f"storage bench: {e}") from None
    if as_json:
        typer.echo(json.dumps(res))
    else:
        table("Storage benchmark", ("figure", "value"),
              [(k, f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in res.items()])
    if res["acked_lost"] or res["dirstore_acked_lost"]:
        raise typer.Exit(1)


@app.command("api")
def api(
    db: str = typer.Option("", "--db", help="an EMPTY database URL, or 'postgres' for a throwaway "
                           "PostgreSQL cluster (default: a temporary SQLite file)"),
    replicas: int = typer.Option(1, "--replicas", help="`poolvisor serve` processes on that database"),
    clients: int = typer.Option(0, "--clients", help="closed loop: N clients, each waiting for its answer"),
    rate: float = typer.Option(0.0, "--rate", help="open loop: creations offered per second", parser=number),
    seconds: float = typer.Option(10.0, "--seconds", help="length of the load (it stops by itself)",
                                  parser=number),
    hosts: int = typer.Option(50, "--hosts", help="demo hosts to seed"),
    live: int = typer.Option(200, "--live",
                             help="workloads the load holds at once (then deletes the oldest)"),
    client_procs: int = typer.Option(1, "--client-procs", help="client processes (asyncio)"),
    serve_threads: int = typer.Option(8, "--serve-threads", help="`serve --threads` of each replica"),
    workers: int = typer.Option(1, "--workers", help="`serve --workers` of each replica (processes "
                                "on one port)"),
    kill_after: float = typer.Option(0.0, "--kill-after", parser=number,
                                     help="kill -9 one replica S seconds in and restart it at once"),
    db_statements: bool = typer.Option(False, "--db-statements",
                                       help="with --db postgres: statements per create and their server "
                                       "time (pg_stat_statements)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Create/delete load over HTTP against real servers on loopback: rate, latency, correctness.

    Exits 1 when the store is wrong afterwards (over-allocation, invariant, a lost acknowledged
    creation, a 5xx, a 429 without Retry-After), never for a speed."""
    import json

    from poolvisor.bench import api as bapi
    from poolvisor.cli.errors import fail
    from poolvisor.cli.render import table
    from poolvisor.domain.errors import PoolvisorError

    if not clients and not rate:
        clients = 200
    cfg = bapi.ApiBenchConfig(db=db or None, replicas=replicas, clients=clients, rate=rate, seconds=seconds,
                              hosts=hosts, live=live, client_procs=client_procs,
                              kill_after=kill_after or None, serve_threads=serve_threads,
                              workers=workers, db_statements=db_statements)
    try:
        res = bapi.run(cfg)
    except PoolvisorError as e:
        raise fail(f"bench api: {e.message}") from None
    if as_json:
        typer.echo(json.dumps(res))
    else:
        table("poolvisor bench api", ("figure", "value"),
              [(k, f"{v:,.4g}" if isinstance(v, float) else str(v)) for k, v in res.items()
               if k != "db_statements"])
        for st in res.get("db_statements", []):
            typer.echo(f"{st['calls_per_create']:7.3f} calls {st['exec_ms_per_create']:8.4f} ms  "
                       f"{st['query']}")
    if not bapi.passed(res):
        raise typer.Exit(1)


@app.command("migrate")
def migrate(
    migrations: int = typer.Option(10, "--migrations", min=1, max=1000,
                                   help="migrations through poolvisor (as many again through virsh)"),
    memory_mib: int = typer.Option(96, "--memory-mib", min=96, max=4096,
                                   help="guest memory (the lab kernel needs 96)"),
    tick_ms: int = typer.Option(25, "--tick-ms", min=5, max=1000, help="guest counter interval"),
    no_virsh: bool = typer.Option(False, "--no-virsh", help="skip the plain `virsh migrate` comparison"),
    shared_storage: bool = typer.Option(False, "--shared-storage",
                                        help="the hosts share one storage directory (no disk copy)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Live migration between two real libvirt hosts (lab, needs root + libvirt + QEMU): total
    time, downtime seen by the guest, lost guests; beside plain `virsh migrate --live`."""
    import json

    from poolvisor.cli.errors import fail
    from poolvisor.cli.render import say, table

    try:
        from poolvisor.bench import migrate as bm
    except ImportError as e:
        raise fail(f"bench migrate needs libvirt-python: {e}") from None
    try:
        res = bm.run(migrations=migrations, memory_mib=memory_mib, tick_ms=tick_ms, virsh=not no_virsh,
                     shared_storage=shared_storage)
    except bm.BenchUnavailable as e:
        raise fail(f"bench migrate: {e}") from None
    except (OSError, TimeoutError, RuntimeError) as e:
        raise fail(f"bench migrate: {e}") from None
    if as_json:
        typer.echo(json.dumps(res))
    else:
        table("Live migration benchmark", ("figure", "value"),
              [(k, "-" if v is None else f"{v:,.4g}" if isinstance(v, float) else str(v))
               for k, v in res.items()])
        say("[dim]goals: median_downtime_ms <= virsh_median_downtime_ms, median_total_s < 2, "
            "lost_guests = 0[/dim]")
    if res["lost_guests"]:
        raise typer.Exit(1)


@app.command("ha")
def ha(
    hosts: int = typer.Option(8, "--hosts", min=2, max=200, help="sim hosts"),
    workloads: int = typer.Option(40, "--workloads", min=1, max=2000, help="workloads spread over them"),
    kills: int = typer.Option(3, "--kills", min=1, max=50, help="hosts killed, one after another"),
    interval: float = typer.Option(1.0, "--interval", parser=number, help="HA heartbeat interval (s)"),
    fail_after: int = typer.Option(3, "--fail-after", min=1, max=1000,
                                   help="missed heartbeats before a host is fenced"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """HA on the sim driver: time from a host's death to declared failed (fenced) and to its
    workloads running elsewhere (goals with the defaults: 5 s and 10 s)."""
    import json

    from poolvisor.bench import ha as bh
    from poolvisor.cli.errors import fail
    from poolvisor.cli.render import say, table
    from poolvisor.services.ha import MAX_INTERVAL_S, MIN_INTERVAL_S

    if not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise fail(f"--interval must be {MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} seconds")
    res = bh.run(hosts=hosts, workloads=workloads, kills=kills, interval_s=interval, fail_after=fail_after)
    if as_json:
        typer.echo(json.dumps(res))
    else:
        table("HA benchmark (sim driver)",
              ("host", "workloads", "declared failed (s)", "running elsewhere (s)"),
              [(r["host"], str(r["workloads"]), "-" if r["declared_failed_s"] is None
                else f"{r['declared_failed_s']:.2f}", "-" if r["running_elsewhere_s"] is None
                else f"{r['running_elsewhere_s']:.2f}") for r in res["rounds"]])
        say("[dim]goals: declared failed within {} s, running elsewhere within {} s; check {}[/dim]",
            f"{res['goal_declared_s']:g}", f"{res['goal_running_s']:g}",
            "clean" if res["check_ok"] else "NOT CLEAN")
    if res["running_elsewhere_s_max"] is None or not res["check_ok"] or not res["rejoined_all"]:
        raise typer.Exit(1)
