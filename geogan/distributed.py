"""Dask front: render blocks of tile rows on a dask.distributed cluster.

The generator grid's tile rows (the canonical grid, :mod:`geogan.anchor`) are split into blocks; each block
is rendered by a worker (which loads the model once and keeps it). The driver feeds the returned strips to
the same :class:`~geogan.warp.StripWarper` as a local render, in canonical row order (a block that comes
back early waits for the ones above it), and writes the output strips it completes into the same COGs.
Tiles are pure functions of their inputs and (seed, world position) noise, so a block that re-renders the
tile row above it reproduces the local render bit for bit.

Point it at an existing cluster with ``scheduler="tcp://host:8786"`` (for
example one started by dask-kubernetes or dask-jobqueue), or let it start a
``LocalCluster`` with ``workers=N``. With ``blocks_out`` the workers write their blocks themselves and the
driver only an index (:mod:`geogan.blocks`); this module then only gives the client and the model reference.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .classes import Schema
from .errors import Cancelled, InputError
from .grid import Grid
from .infer import LoadedModel, load_model
from .pipeline import (GeneratorFrame, RenderJob, RenderResult, block_rows, check_warped, log_plan, output_specs,
                       render_block, write_warped)
from .runtime import frozen_gc
from .settings import RuntimeSettings
from .tiles import TileSpec
from .write import OutputSet

log = logging.getLogger("geogan")

_WORKER_MODELS: dict[tuple[str, str, str, str], LoadedModel] = {}


def _worker_model(model_ref: str, schema: Schema, device: str, precision: str = "fp32",
                  runtime: str = "torch") -> LoadedModel:
    """Load a model once per worker process and keep it (with the runtime the client's model uses)."""
    key = (model_ref, device, precision, runtime)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = load_model(model_ref, schema, device, precision=precision, runtime=runtime)
    return _WORKER_MODELS[key]


@dataclass(frozen=True)
class WorkerModel:
    """What a worker needs to load the client's model itself: its card (a path every worker can read), the
    device kind, precision, runtime and the style latent of a ``--style-ref``."""

    card_path: str
    device: str
    precision: str = "fp32"
    runtime: str = "torch"
    style: object = None

    @classmethod
    def of(cls, model) -> "WorkerModel":
        return cls(model.card_path, model.device.type, model.precision, _runtime_of(model), model.style)

    def load(self, schema: Schema) -> LoadedModel:
        """The model, loaded once per worker process (with this style)."""
        model = _worker_model(self.card_path, schema, self.device, self.precision, self.runtime)
        return model if self.style is None else dataclasses.replace(model, style=self.style)


@frozen_gc()  # see geogan.runtime
def _render_block_task(frame: GeneratorFrame, model_ref: WorkerModel, schema: Schema, spec: TileSpec, plan,
                       first_row: int, stop_row: int, seed: int):
    model = model_ref.load(schema)
    return first_row, render_block(frame.feats, frame.grid, model, spec, plan, first_row=first_row,
                                   stop_row=stop_row, seed=seed, offset_rc=frame.offset_rc)


def _runtime_of(model) -> str:
    return getattr(model, "runtime", "torch")  # an OnnxModel says "onnx"; a torch LoadedModel has no such field


def blocks(n_tile_rows: int, rows_per_block: int) -> Iterator[tuple[int, int]]:
    for first in range(0, n_tile_rows, rows_per_block):
        yield first, min(n_tile_rows, first + rows_per_block)


def get_client(scheduler: str | None, workers: int | None):
    """A dask.distributed Client: connect to ``scheduler`` or start a LocalCluster of ``workers``. It is not made
    the process's default client (nor dask's scheduler): renders in threads each keep to their own."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError("Dask rendering needs dask.distributed; pip install 'geogan[dask]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); check the address "
                             "or use --workers N for a local cluster") from None
    if workers is None or workers < 1:
        raise InputError("--workers must be 1 or more")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster, set_as_default=False)


def completed(client, futures: list, timeout_s: float | None = None):
    """``futures`` (of ``client``) as they finish, waited on in ``client``'s own event loop.

    ``as_completed`` without a loop (and ``distributed.wait``) waits in the loop of the process's current or
    default client: with renders in threads (QGIS tasks) another render's client, and when that one closes, the
    futures registered with its loop are never reported: the render waits forever with idle workers
    (dask/distributed#4317). Past ``timeout_s`` the iterator raises :class:`TimeoutError`."""
    from dask.distributed import as_completed

    return as_completed(futures, loop=client.loop, timeout=timeout_s)


def render_grid_dask(job: RenderJob, runtime: RuntimeSettings, client, *, rows_per_block: int = 2,
                     retries: int = 2) -> RenderResult:
    """Like :func:`geogan.pipeline.render_grid`, with blocks of tile rows rendered on Dask workers.

    The same :class:`~geogan.pipeline.RenderJob` (its plan size-checked by :mod:`geogan.core`) and
    :class:`~geogan.settings.RuntimeSettings`; the workers load the model from ``job.model.card_path``.
    The driver writes the outputs with the same specs (compression included) as a local render.
    """
    t0 = time.perf_counter()
    log_plan(job.generator.grid, job.spec, job.plan, job.model, job.grid, job.heights.res_xy_m)
    block_list = list(blocks(len(job.plan.model_px_by_row), rows_per_block))
    log.info("dask: %d blocks of up to %d tile rows on %d workers", len(block_list), rows_per_block,
             len(client.scheduler_info().get("workers", {})))
    futures = _submit_blocks(job, client, block_list, retries)
    try:
        _write_blocks(job, runtime, completed(client, futures), [first for first, _ in block_list])
    finally:
        for fut in futures:
            fut.cancel()
    secs = time.perf_counter() - t0
    log.info("dask render: %d tiles in %.1f s", job.plan.tiles, secs)
    paths = job.paths
    return RenderResult(paths.aerial, paths.height, paths.classes, job.grid, job.plan.tiles, secs,
                        hillshade=paths.hillshade)


def _submit_blocks(job: RenderJob, client, block_list: list[tuple[int, int]], retries: int) -> list:
    """One task per block of tile rows; the generator's frame (features, grid, world offset), the schema and the
    plan are sent to every worker once."""
    model = job.model
    frame_f, schema_f, plan_f = client.scatter([job.generator, job.schema, job.plan], broadcast=True)
    model_ref = WorkerModel.of(model)
    run = run_token()
    return [client.submit(_render_block_task, frame_f, model_ref, schema_f, job.spec, plan_f, first, stop,
                          job.generator_seed, retries=retries, pure=False, key=f"geogan-block-{first}-{stop}-{run}")
            for first, stop in block_list]


def run_token() -> str:
    """A token unique to one render, in its tasks' keys: two renders on one scheduler (two clients, or the
    same client twice) never share a key, so neither gets the other's blocks."""
    return secrets.token_hex(6)


def _write_blocks(job: RenderJob, runtime: RuntimeSettings, finished, firsts: list[int]) -> None:
    """Warp and write the blocks' strips (with their class-map and height rows) in canonical row order, the
    futures taken as they ``finished`` (:func:`completed`): a block that comes back before the ones above it
    waits in memory."""
    done, waiting, n_blocks, firsts = 0, {}, len(firsts), sorted(firsts)
    warper = job.warper()
    with OutputSet(job.grid, output_specs(job.paths, job.schema, job.compression, job.tags, job.coverage)) as outputs:
        for fut in finished:
            if runtime.cancel is not None and runtime.cancel():
                raise Cancelled("render cancelled; no output was written")
            first, strips = fut.result()
            waiting[first] = strips
            while firsts and firsts[0] in waiting:
                for row0, rgb, terrain_m in waiting.pop(firsts.pop(0)):
                    write_warped(outputs, job, warper.push(row0, rgb, terrain_m))
            done += 1
            if runtime.progress is not None:
                runtime.progress(done / n_blocks, f"block {done}/{n_blocks}")
        check_warped(warper)


def covered_rows(grid: Grid, spec: TileSpec, rows_per_block: int) -> list[tuple[int, int]]:
    """Output row ranges of each block (for tests: they tile the grid exactly once)."""
    n = spec.count(grid.height)
    return [block_rows(grid, spec, a, b) for a, b in blocks(n, rows_per_block)]


__all__ = ["render_grid_dask", "get_client", "completed", "covered_rows", "blocks", "Path"]
