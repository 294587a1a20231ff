"""Worker-written output on Dask: the workers write the COGs of their own blocks, the client only an index.

``geogan render --workers N | --scheduler ADDR --blocks-out FOLDER`` (``blocks_out=`` in the API). The output
grid's strips (the same strips :class:`~geogan.warp.StripWarper` cuts a local render into) are grouped into
blocks of about ``BLOCK_CANONICAL_ROWS`` generator rows. Each block is a Dask task: the worker renders the
generator's tile rows the block needs (one tile row above it again, as :func:`geogan.pipeline.render_block`
does, so blending is the same), warps them onto the block's output strips, draws the class map and heights
of the same strips, and writes ``FOLDER/block_NNNNN/{aerial,height,classes}.tif`` (+ hillshade) with the
same specs as a local render (:class:`~geogan.write.OutputSet`: staged, committed as a set, cleaned up on
failure). Every output pixel is made exactly as the local render makes it, strip by strip, so the mosaic is
bit-identical to the local COGs.

A task returns a few numbers (:class:`BlockRecord`), never pixels: the client's memory and network traffic
do not grow with the area's pixels (its features, read once and sent to every worker once, still grow with
the number of features). When every block is written the client writes the index into ``--out``, as a set
(:mod:`geogan.outdir`): a VRT per output and a STAC ItemCollection (:mod:`geogan.blocks_index`). A block that
cannot be written fails the run with one line; the index is then not written (and an index of an earlier run
into ``--out`` was removed before any block was replaced), so no index ever claims blocks that are not there.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import outdir
from .errors import Cancelled, GeoganError, OutputError, RenderError
from .pipeline import (OutputPaths, RenderJob, RenderResult, check_warped, log_plan, output_specs, render_block,
                       write_warped)
from .runtime import frozen_gc
from .settings import RuntimeSettings
from .tiles import TileSpec
from .warp import OutStrip, StripWarper
from .write import OutputSet, check_outputs

log = logging.getLogger("geogan")

BLOCK_CANONICAL_ROWS = 2048  # generator rows per block, about (plus one tile row rendered again above it)


@dataclass(frozen=True)
class Block:
    """A run of consecutive output strips, written by one task into ``block_NNNNN`` of the blocks folder."""

    index: int
    strips: tuple[OutStrip, ...]

    @property
    def name(self) -> str:
        return f"block_{self.index:05d}"

    @property
    def row0(self) -> int:
        return self.strips[0].row0

    @property
    def rows(self) -> int:
        return self.strips[-1].row0 + self.strips[-1].rows - self.row0

    @property
    def canonical_rows(self) -> tuple[int, int]:
        """The generator rows [lo, hi) the block's strips are warped from."""
        return min(s.src_lo for s in self.strips), max(s.src_hi for s in self.strips)


@dataclass(frozen=True)
class BlockFailure:
    """A block its worker could not make: ``write`` a folder, disk or permission problem, else a geogan error
    (a model card the worker cannot read, ...). Sent back as a value: not retried (it would fail again), and
    not an exception (geogan's OutputError does not survive the unpickling of Dask's exceptions)."""

    index: int
    message: str
    write: bool = True


@dataclass(frozen=True)
class BlockRecord:
    """What a worker sends back for a block: where it wrote it and which output rows it holds."""

    index: int
    row0: int
    rows: int
    folder: str  # the block's folder as the worker sees it
    files: tuple[tuple[str, str], ...]  # (output key, file name)


def plan_blocks(strips: Sequence[OutStrip], canonical_rows: int | None = None) -> list[Block]:
    """Consecutive output strips grouped so each block spans about ``canonical_rows`` generator rows (at least
    one strip per block)."""
    limit = BLOCK_CANONICAL_ROWS if canonical_rows is None else canonical_rows
    blocks: list[Block] = []
    run: list[OutStrip] = []
    for strip in strips:
        if run and strip.src_hi - run[0].src_lo > limit:
            blocks.append(Block(len(blocks), tuple(run)))
            run = []
        run.append(strip)
    if run:
        blocks.append(Block(len(blocks), tuple(run)))
    return blocks


def tile_rows_for(block: Block, spec: TileSpec, n_tile_rows: int) -> tuple[int, int]:
    """The generator's tile rows [first, stop) whose owned rows (:func:`geogan.pipeline.block_rows`) cover the
    block's generator rows."""
    lo, hi = block.canonical_rows
    first = min(lo // spec.stride_px, n_tile_rows - 1)
    stop = min(n_tile_rows, -(-hi // spec.stride_px))
    return first, max(stop, first + 1)


class _ShiftedRows:
    """A coverage's ``rows(row0, n)`` (:class:`geogan.coverage.Coverage`) for a block's own rows."""

    def __init__(self, rows, row0: int) -> None:
        self.rows, self.row0 = rows, row0

    def __call__(self, row0: int, n: int):
        return self.rows(self.row0 + row0, n)


def block_specs(job: RenderJob, block: Block) -> dict:
    """The outputs' specs (:func:`geogan.pipeline.output_specs`) for a block's COGs: the coverage mask read at
    the block's rows of the output grid (a function of each pixel's position there, so blocks join exactly)."""
    specs = output_specs(job.paths, job.schema, job.compression, job.tags, job.coverage)
    if job.coverage is None:
        return specs
    shifted = _ShiftedRows(job.coverage.rows, block.row0)
    return {key: dataclasses.replace(spec, coverage=shifted) if spec.coverage is not None else spec
            for key, spec in specs.items()}


class _RowShift:
    """An :class:`OutputSet` of one block seen as the whole output: rows of the output grid go to the block's
    rows (what :func:`geogan.pipeline.write_warped` writes is addressed in output rows)."""

    def __init__(self, outputs: OutputSet, row0: int) -> None:
        self.outputs, self.row0 = outputs, row0

    def write(self, key: str, row0: int, values) -> None:
        self.outputs.write(key, row0 - self.row0, values)


def write_block(job: RenderJob, block: Block, overwrite: bool) -> None:
    """Render, warp and write one block into the COGs at ``job.paths`` (on the block's own grid)."""
    check_outputs(job.paths.all(), overwrite)  # before the generator runs: a folder it cannot write fails at once
    first, stop = tile_rows_for(block, job.spec, len(job.plan.model_px_by_row))
    gen = job.generator
    strips = render_block(gen.feats, gen.grid, job.model, job.spec, job.plan, first_row=first, stop_row=stop,
                          seed=job.generator_seed, offset_rc=gen.offset_rc)
    warper = StripWarper(gen.grid, job.grid, job.heights.gsd_m / job.model.gsd_m, strips=block.strips,
                         first_row=strips[0][0])
    grid = job.grid.window(block.row0, 0, block.rows, job.grid.width)
    with OutputSet(grid, block_specs(job, block)) as outputs:
        shifted = _RowShift(outputs, block.row0)
        strips.reverse()
        while strips:  # each generator strip is let go once warped
            row0, rgb, terrain_m = strips.pop()
            write_warped(shifted, job, warper.push(row0, rgb, terrain_m))
        check_warped(warper)


@frozen_gc()  # see geogan.runtime
def _write_block_task(job: RenderJob, model_ref, block: Block, root: str, overwrite: bool,
                      dem_path: str | None) -> BlockRecord | BlockFailure:
    """A worker's task: load the model (once per worker), open the DEM, write the block; a few numbers back."""
    try:
        return _write_block_here(job, model_ref, block, Path(root) / block.name, overwrite, dem_path)
    except (OSError, GeoganError) as exc:  # geogan's OutputError is an OSError too
        return BlockFailure(block.index, str(exc) or type(exc).__name__, isinstance(exc, OSError))


def _write_block_here(job: RenderJob, model_ref, block: Block, folder: Path, overwrite: bool,
                      dem_path: str | None) -> BlockRecord:
    from .terrain import DemSource

    job = dataclasses.replace(job, model=model_ref.load(job.schema),
                              paths=OutputPaths.in_dir(folder, job.heights.hillshade))
    with (DemSource(dem_path, reference_grid=job.grid) if dem_path else nullcontext()) as dem:
        if dem is not None:
            job = dataclasses.replace(job, heights=dataclasses.replace(job.heights, dem=dem))
        write_block(job, block, overwrite)
    files = tuple((key, p.name) for key, p in zip(("aerial", "height", "classes", "hillshade"),
                                                   (job.paths.aerial, job.paths.height, job.paths.classes,
                                                    job.paths.hillshade)) if p is not None)
    return BlockRecord(block.index, block.row0, block.rows, str(folder.resolve()), files)


def _shipped_job(job: RenderJob) -> tuple[RenderJob, str | None]:
    """``job`` as the workers get it: no model (they load it from its card), no open DEM (its path instead)."""
    dem = job.heights.dem
    heights = dataclasses.replace(job.heights, dem=None)
    return dataclasses.replace(job, model=None, heights=heights), (None if dem is None else dem.path)


def _submit(job: RenderJob, client, blocks: list[Block], root: str, overwrite: bool, retries: int) -> dict:
    """One task per block; the job (features, grids, plan) is sent to every worker once."""
    from .distributed import WorkerModel, run_token

    shipped, dem_path = _shipped_job(job)
    [job_f] = client.scatter([shipped], broadcast=True)
    model_ref = WorkerModel.of(job.model)
    run = run_token()
    return {client.submit(_write_block_task, job_f, model_ref, b, root, overwrite, dem_path, retries=retries,
                          pure=False, key=f"geogan-write-{b.name}-{run}"): b for b in blocks}


def _failure(problem: BaseException | BlockFailure, block: Block, root: str) -> GeoganError:
    """The one-line error of a block that failed on a worker: a write (:class:`BlockFailure`) or anything else."""
    where = f"block {block.index} (output rows {block.row0}..{block.row0 + block.rows}) under '{root}'"
    text = (problem.message if isinstance(problem, BlockFailure) else str(problem)).strip()
    text = text.splitlines()[0].split("; ")[0] if text else type(problem).__name__  # its own fix names --out
    if isinstance(problem, BlockFailure) and problem.write:
        return OutputError(f"a worker could not write {where}: {text}; give --blocks-out a folder every worker can "
                           "write (no index was written)")
    return RenderError(f"{where} failed on a worker: {text} (no index was written)")


def _collect(client, futures: dict, runtime: RuntimeSettings, root: str) -> list[BlockRecord]:
    """The blocks' records as they finish; the first failure stops the run."""
    from .distributed import completed

    records = []
    for done, fut in enumerate(completed(client, list(futures)), 1):
        if runtime.cancel is not None and runtime.cancel():
            raise Cancelled("render cancelled; no index was written")
        try:
            record = fut.result()
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any worker failure becomes the block's one-line error
            raise _failure(exc, futures[fut], root) from None
        if isinstance(record, BlockFailure):
            raise _failure(record, futures[fut], root)
        records.append(record)
        if runtime.progress is not None:
            runtime.progress(done / len(futures), f"block {done}/{len(futures)}")
    return sorted(records, key=lambda r: r.index)


SETTLE_S = 120.0  # how long a failed run waits for the blocks still being written to end


def _stop(client, futures: dict) -> None:
    """Cancel the blocks not started and wait (up to ``SETTLE_S``) for those being written to end, so that a
    failed run returns once its workers have committed or removed every block they were writing (a running
    Dask task cannot be stopped)."""
    from .distributed import completed

    busy = {key for keys in client.processing().values() for key in keys}
    running = [fut for fut in futures if fut.key in busy]
    for fut in futures:
        if fut.key not in busy:
            fut.cancel()
    try:
        for _ in completed(client, running, SETTLE_S):
            pass
    except TimeoutError:
        log.warning("blocks still being written after %.0f s; they are not indexed", SETTLE_S)


def check_blocks_folder(root: Path, blocks: list[Block], overwrite: bool) -> None:
    """Refuse at once, when the client sees the blocks folder, blocks of an earlier run without ``overwrite``."""
    if overwrite or not blocks:
        return
    first = root / blocks[0].name / "aerial.tif"
    if first.exists():
        raise OutputError(f"'{first}' already exists; pass --overwrite to replace the blocks or choose another "
                          "--blocks-out")


def render_grid_blocks(job: RenderJob, runtime: RuntimeSettings, client, blocks_out: Path, *,
                       overwrite: bool = False, retries: int = 2) -> RenderResult:
    """Render ``job`` on Dask with the workers writing blocks into ``blocks_out``; the index goes to the folder
    of ``job.paths`` (:func:`geogan.blocks_index.index_paths`), written last and as a set."""
    from .blocks_index import index_names, write_index

    t0 = time.perf_counter()
    log_plan(job.generator.grid, job.spec, job.plan, job.model, job.grid, job.heights.res_xy_m)
    blocks = plan_blocks(job.warper().strips)
    root = str(Path(blocks_out).expanduser().absolute())
    check_blocks_folder(Path(root), blocks, overwrite)
    out_dir = job.paths.aerial.parent
    log.info("dask: %d blocks written by %d workers into %s", len(blocks),
             len(client.scheduler_info().get("workers", {})), root)
    with outdir.FolderLock(out_dir):
        outdir.recover(out_dir)
        for name in index_names(job.paths):  # an earlier index must not claim blocks this run replaces
            (out_dir / name).unlink(missing_ok=True)
        futures = _submit(job, client, blocks, root, overwrite, retries)
        try:
            records = _collect(client, futures, runtime, root)
        except GeoganError:
            _stop(client, futures)
            raise
        finally:
            for fut in futures:
                fut.cancel()
        write_index(job, records, out_dir)
    secs = time.perf_counter() - t0
    log.info("dask render: %d blocks, %d tiles in %.1f s", len(blocks), job.plan.tiles, secs)
    paths = job.paths
    return RenderResult(paths.aerial, paths.height, paths.classes, job.grid, job.plan.tiles, secs,
                        hillshade=paths.hillshade)
