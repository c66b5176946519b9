"""Entropy stage 3 (entropy/lz.py): a plane filtered and LZMA2-compressed, chosen by the encoder only
where strictly smaller; files judged with an independent decoder (Pillow reads what decompress wrote)."""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import NO_TORCH, text_beside_photo
from pixzip.cli import main
from pixzip.backends import adaptive_planes
from pixzip.entropy import lz
from pixzip.formats import container


def repeated_tiles(seed: int = 5, h: int = 72, w: int = 96) -> np.ndarray:
    """Screenshot-like: four random 12x16 'glyphs' of three inks, placed over and over on a flat ground.
    The neighbourhood predicts a glyph's pixels poorly; a dictionary coder finds every repeat."""
    rng = np.random.default_rng(seed)
    inks = np.array([[20, 20, 30], [110, 120, 200], [235, 235, 230]], dtype=np.uint8)
    glyphs = inks[rng.integers(0, 3, (4, 12, 16))]
    img = np.full((h, w, 3), 230, dtype=np.uint8)
    for k, (y, x) in enumerate((y, x) for y in range(0, h - 11, 12) for x in range(0, w - 15, 16)):
        img[y:y + 12, x:x + 16] = glyphs[(k * 7 + k // 3) % 4]
    return img


def fractional_ramp(h: int = 60, w: int = 160) -> np.ndarray:
    """A synthetic gradient at a fractional slope (kinds' gradient.png in small): steps of 1 every 5 or
    6 pixels, each row shifted by 1.5 pixels on average."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 3 // 8, yy // 2, (2 * xx + 3 * yy) // 11], -1).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (5, 1, 1), (13, 17, 3), (9, 4, 2), (129, 70, 3)])
def test_every_mode_is_undone_exactly(shape, rng):
    plane = rng.integers(0, 256, shape, dtype=np.uint8)
    for mode in lz.MODES:
        data = lz.residuals(plane, mode)
        assert len(data) == plane.size
        np.testing.assert_array_equal(lz.samples(data, shape, mode), plane)


def test_the_plane_filter_turns_a_plane_into_zeros_but_its_first_row_and_column():
    yy, xx = np.mgrid[0:6, 0:9]
    plane = (3 * xx + 5 * yy + 7).astype(np.uint8)[:, :, None]
    r = np.frombuffer(lz.residuals(plane, 3), dtype=np.uint8).reshape(6, 9)
    assert r[0, 0] == 7 and (r[1:, 1:] == 0).all()


def test_encode_returns_none_where_it_cannot_win(rng):
    noise = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    assert lz.encode(noise, noise.size) is None                       # raw is smaller
    small = fractional_ramp(20, 60)
    assert small.size < lz.MIN_SAMPLES and lz.encode(small, small.size) is None
    ramp = fractional_ramp()
    coded = lz.encode(ramp, ramp.size // 8)
    assert coded is not None and len(coded[1]) < ramp.size // 8
    np.testing.assert_array_equal(lz.decode(coded[1], ramp.shape, coded[0]), ramp)


def test_decode_refuses_every_stream_that_is_not_exactly_the_plane():
    ramp = fractional_ramp()
    mode, payload = lz.encode(ramp, ramp.size // 8)
    bad = {"truncated": payload[:-4], "extended": payload + b"\x00", "first half": payload[:len(payload) // 2],
           "garbage": bytes(range(7, 200))}
    for what, data in bad.items():
        with pytest.raises(ValueError):
            lz.decode(data, ramp.shape, mode)
    with pytest.raises(ValueError):                      # a bigger plane's stream: never inflated past the plane
        lz.decode(lzma.compress(bytes(ramp.size + 1), format=lzma.FORMAT_RAW,
                                filters=[{"id": lzma.FILTER_LZMA2}]), ramp.shape, mode)
    with pytest.raises(ValueError):
        lz.decode(payload, ramp.shape, 8)


def test_a_match_beyond_the_dictionary_is_refused():
    """The decoder's dictionary is bounded (lz.MAX_DICT), whatever the plane's size: a stream whose
    match reaches further back (written with a larger dictionary) is corrupt, not a reason to grow."""
    block = np.random.default_rng(1).integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    data = block + bytes(lz.MAX_DICT) + block
    payload = lzma.compress(data, format=lzma.FORMAT_RAW,
                            filters=[{"id": lzma.FILTER_LZMA2, "preset": 1, "dict_size": 2 * lz.MAX_DICT}])
    with pytest.raises(ValueError):
        lz.decode(payload, (1, len(data), 1), 0)


def _compress(tmp_path: Path, img: np.ndarray, name: str, *extra) -> tuple[Path, container.Header]:
    src = tmp_path / f"{name}.png"
    Image.fromarray(img).save(src)
    out = tmp_path / f"{name}.pxz"
    r = CliRunner().invoke(main, ["compress", str(src), "-o", str(out), "-q", *extra])
    assert r.exit_code == 0, r.output
    return out, container.read_header(out.read_bytes())[0]


@pytest.mark.parametrize("effort", ["1", "4"])
def test_repeats_are_coded_by_the_lz_stage_and_decode_exactly(tmp_path, effort):
    """The glyphs' repeats go to the LZ stage at -e 1 (a file of 568 bytes); from -e 4 the match level (16, the match's
    value as the centre) takes them in fewer still (401)."""
    img = repeated_tiles()
    out, h = _compress(tmp_path, img, "glyphs", "-e", effort)
    assert container.LZ in h.entropy if effort == "1" else h.levels == [16]
    png = tmp_path / "back.png"
    r = subprocess.run([sys.executable, "-m", "pixzip", "decompress", str(out), "-o", str(png), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(png)), img)          # Pillow, not our reader
    info = CliRunner().invoke(main, ["info", str(out)])
    assert ("LZMA2 (" if effort == "1" else "adaptive level 16") in info.output


@pytest.mark.parametrize("h, w, tile", [(60, 160, "256"), (120, 320, "128")])
def test_a_fractional_ramp_costs_less_than_png(tmp_path, h, w, tile):
    """The kinds' gradient.png was 2.6x PNG before the stage; its small twin here is under PNG. In tiles of 128
    the stage hands tiles to an LZ stream (264 bytes), and the whole plane by LZ is still tried, not ruled out
    by the probe against that smaller budget, and taken (192)."""
    img = fractional_ramp(h, w)
    out, h = _compress(tmp_path, img, "ramp", "--tile", tile)
    png = tmp_path / "ramp-opt.png"
    Image.fromarray(img).save(png, optimize=True)
    assert out.stat().st_size < png.stat().st_size
    assert h.entropy == [container.LZ]


def test_photographs_do_not_take_it(tmp_path, rng):
    """A noisy smooth image is coded by the model's stages (the probe rules the stage out)."""
    yy, xx = np.mgrid[0:80, 0:96]
    img = np.clip(np.stack([xx * 2, yy * 3, xx + yy], -1) + rng.normal(0, 6, (80, 96, 3)), 0, 255).astype(np.uint8)
    _, h = _compress(tmp_path, img, "photo")
    assert container.LZ not in h.entropy


def _with_lz_plane(tmp_path: Path) -> bytes:
    out, _ = _compress(tmp_path, repeated_tiles(), "glyphs", "-e", "1")       # (from -e 4 the match level takes it)
    return out.read_bytes()


def _rebuild(data: bytes, edit) -> bytes:
    h, offset = container.read_header(data)
    streams = container.read_streams(data, h, offset)
    edit(h, streams)
    return container.write(h, streams)


def test_a_damaged_lz_plane_is_refused_in_one_line(tmp_path):
    good = _with_lz_plane(tmp_path)

    def damage(h, streams):
        streams[0] = streams[0].copy()
        streams[0][len(streams[0]) // 2] ^= 0x5A5A5A5A

    def other_mode(h, streams):
        h.lz_modes = [m ^ 1 for m in h.lz_modes]          # the same stream read with another filter

    # another filter gives other pixels: the transform record's check or the pixel CRC refuses them
    for edit, expect in ((damage, ("corrupted",)), (other_mode, ("corrupted", "do not fit"))):
        bad = tmp_path / "bad.pxz"
        bad.write_bytes(_rebuild(good, edit))
        r = CliRunner().invoke(main, ["decompress", str(bad), "-o", str(tmp_path / "x.png")])
        assert r.exit_code != 0 and any(e in r.output for e in expect), r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "x.png").exists()


def test_an_unknown_lz_mode_is_a_corrupt_header(tmp_path):
    data = _with_lz_plane(tmp_path)
    with pytest.raises(container.FormatError, match="LZ stage mode 9"):
        container.read_header(_rebuild(data, lambda h, s: setattr(h, "lz_modes", [9])))


def test_an_lz_file_decodes_without_torch_and_without_the_compiled_coder(tmp_path):
    """The LZ stage needs neither: numpy and the standard library's lzma (its plane's model is not even
    looked up)."""
    img = repeated_tiles()
    out, h = _compress(tmp_path, img, "glyphs", "-e", "1")                   # (from -e 4 the match level takes it)
    assert h.entropy == [container.LZ]
    code = NO_TORCH + ("import sys\nfrom pixzip.cli import main\n"
                       "main(['decompress', 'glyphs.pxz', '-o', 'back.png', '-q'])\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PIXZIP_NATIVE": "0"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")), img)


def radial_gradient(h: int = 160, w: int = 240) -> np.ndarray:
    """Rings about the centre: the image's halves mirror each other, far repeats no sample of a few
    bands shows (the probe's blind spot, measured at 1.77x its share where the whole plane takes 0.48x)."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - w / 2, yy - h / 2)
    return np.stack([np.clip(255 - 2 * r, 0, 255), np.clip(r, 0, 255), (r % 32) * 8], -1).astype(np.uint8)


def test_the_trial_levels_search_every_plane_without_the_probe(tmp_path, monkeypatch):
    """-e 6, 8 and 9 (Effort.lz_probe False) search the LZ stage on every plane; the bands' probe alone
    (no look again) rules this one out."""
    img = radial_gradient()
    monkeypatch.setattr(lz, "_LOOK_AGAIN_BITS", 0)
    assert lz._ruled_out(img, 9280)         # what -e 4's adaptive stage takes, measured
    _, h = _compress(tmp_path, img, "radial", "-e", "6")
    assert h.entropy == [container.LZ]


def test_a_plane_coded_in_few_bits_that_the_bands_miss_is_looked_at_whole(tmp_path, monkeypatch):
    """The bands' probe takes about 1.8x its share of the stage's 9 280 bytes (0.64 bits a sample) on the
    radial gradient; the look again (the whole plane, xz -3) sees its far repeats, and -e 4 takes the LZ stage."""
    img = radial_gradient()
    sample = lz.probe_rows(img)
    assert min(len(lz._compress(lz.residuals(sample, m), 0)) for m in (0, 3)) > 9280 * sample.size / img.size
    assert 8 * 9280 < lz._LOOK_AGAIN_BITS * img.size and not lz._ruled_out(img, 9280)
    coded, h = _compress(tmp_path, img, "radial", "-e", "4")
    assert h.entropy == [container.LZ] and coded.stat().st_size < 9280
    # above the look again's rate the bands' verdict stands, and the whole plane is not compressed
    monkeypatch.setattr(lz, "_ruled_out_whole", lambda *a: pytest.fail("looked at again"))
    budget = int(lz._LOOK_AGAIN_BITS * img.size / 8) + 1
    assert lz._ruled_out(img, budget) and lz.encode(img, budget) is None


@pytest.mark.parametrize("hard", [True, False])
def test_threads_compress_the_alternatives_to_the_same_choice_and_bytes(hard):
    """The look again, the mode picker and the hard compression's two settings run in threads where given: the
    same verdicts and bytes as one thread."""
    img = radial_gradient()
    for budget in (9280, 4000, 30000):
        assert lz._ruled_out(img, budget, 2) == lz._ruled_out(img, budget, 1)
        assert lz.encode(img, budget, hard, True, 2) == lz.encode(img, budget, hard, True, 1)
    rows = lz.probe_rows(img)
    assert lz._fastest_mode(rows, 4) == lz._fastest_mode(rows, 1)


# -- LZ tiles: the tiles of an adaptive plane that one LZMA2 stream codes ---------------------------------------
def _tile_kinds(data: bytes) -> list[str]:
    h, offset = container.read_header(data)
    return [container.unframe_tile(s)[1] for s in container.read_streams(data, h, offset)]


def test_text_beside_a_photograph_hands_its_tiles_to_one_lz_stream(tmp_path, monkeypatch):
    """In tiles of 48 the text's four tiles go to one LZ stream and the photograph's four stay in the stage: a
    file smaller than either stage alone gives, decoded by another process and judged by Pillow."""
    img = text_beside_photo()
    out, h = _compress(tmp_path, img, "mixed", "--tile", "48")
    assert h.entropy == [container.ADAPTIVE]
    kinds = _tile_kinds(out.read_bytes())
    assert kinds == [container.LZ_TILE, container.LZ_TILE, container.CODED, container.CODED] * 2
    assert h.levels[0] in (9, 11)              # (11: the background retry, white ground beside the photograph)
    assert (f"adaptive level {h.levels[0]} (of 8 tiles: 4 in an LZ stream)"
            in CliRunner().invoke(main, ["info", str(out)]).output)
    monkeypatch.setattr(lz, "tile_candidates", lambda tiles, budgets: [])
    before, h_before = _compress(tmp_path, img, "before", "--tile", "48")
    assert h_before.entropy == [container.ADAPTIVE] and set(_tile_kinds(before.read_bytes())) == {container.CODED}
    assert out.stat().st_size < before.stat().st_size
    assert sum(h.stream_sizes) < len(lz.encode(img, 1 << 30, probe=False)[1])       # the whole plane by LZ
    png = tmp_path / "back.png"
    r = subprocess.run([sys.executable, "-m", "pixzip", "decompress", str(out), "-o", str(png), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(png)), img)


@pytest.mark.parametrize("shapes", [[(8, 8, 1)], [(5, 7, 3), (8, 8, 3), (1, 9, 3)], [(16, 3, 1), (2, 2, 1)]])
def test_lz_tiles_are_undone_exactly_in_every_mode(shapes, rng):
    tiles = [rng.integers(0, 4, s, dtype=np.uint8) * 60 for s in shapes] + [np.full(shapes[0], 7, np.uint8)]
    chosen = list(range(len(tiles)))[::-1]
    payload = lz.encode_tiles(tiles, chosen, hard=False)
    assert payload[0] in lz.MODES
    back = lz.decode_tiles(payload, [tiles[n].shape for n in chosen])
    assert all(np.array_equal(b, tiles[n]) for b, n in zip(back, chosen))
    for mode in lz.MODES[:4] if shapes[0][2] == 1 else lz.MODES:
        stream = lz._compress(b"".join(lz.residuals(tiles[n], mode) for n in chosen), 1)
        back = lz.decode_tiles(bytes([mode]) + stream, [tiles[n].shape for n in chosen])
        assert all(np.array_equal(b, tiles[n]) for b, n in zip(back, chosen))


def test_lz_tiles_refuse_a_stream_that_is_not_exactly_their_samples(rng):
    tiles = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(2)]
    payload = lz.encode_tiles(tiles, [0, 1])
    shapes = [(6, 5, 3), (6, 5, 3)]
    for bad, why in ((b"", "no mode"), (bytes([8]) + payload[1:], "unknown"), (payload[:-3], "LZMA2"),
                     (payload + b"\0", "LZMA2")):
        with pytest.raises(ValueError, match=why):
            lz.decode_tiles(bad, shapes)
    with pytest.raises(ValueError, match="exactly"):
        lz.decode_tiles(payload, shapes[:1])
    with pytest.raises(ValueError):
        lz.decode_tiles(payload, shapes + [(1, 1, 3)])


def test_tiles_the_stage_codes_in_many_bits_are_not_tried(monkeypatch):
    """A photograph's tile (over _TILE_MAX_BITS a sample in the stage) is passed over without compressing it;
    a tile of flat colour under its budget is taken."""
    calls = []
    real = lz._compress
    monkeypatch.setattr(lz, "_compress", lambda data, preset, lc=0: calls.append(len(data)) or real(data, preset, lc))
    tiles = [np.zeros((16, 16, 3), np.uint8), np.zeros((8, 16, 3), np.uint8)]
    photo_budget = int(lz._TILE_MAX_BITS * tiles[0].size / 8) + 1
    assert lz.tile_candidates(tiles, [photo_budget, 40]) == [1]
    assert calls and set(calls) == {8 * 16 * 3}         # the photograph's tile was never compressed


def test_a_tile_whose_first_rows_lz_codes_poorly_is_not_compressed_whole(monkeypatch, rng):
    """The quick probe (the tile's first rows, xz -0) rules a tile out before its whole is compressed."""
    calls = []
    real = lz._compress
    monkeypatch.setattr(lz, "_compress", lambda data, preset, lc=0: calls.append(preset) or real(data, preset, lc))
    noise = rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)
    assert lz.tile_candidates([noise], [noise.size // 4]) == [] and calls == [0, 0]


def test_a_damaged_lz_tile_plane_is_refused_in_one_line(tmp_path):
    """The stream moved to a later LZ tile, a head with both the stored and the LZ bit, a truncated stream."""
    out, _ = _compress(tmp_path, text_beside_photo(), "mixed", "--tile", "48")
    good = out.read_bytes()

    def moved(h, streams):
        streams[0], streams[1] = streams[1], streams[0]

    def both_bits(h, streams):
        streams[2] = streams[2].copy()
        streams[2][0] |= container.FRAME_STORED | container.FRAME_LZ

    def truncated(h, streams):
        payload, _ = container.unframe_tile(streams[0])
        streams[0] = container.frame(payload[:len(payload) // 2], lz=True)

    for edit, expect in ((moved, "corrupted"), (both_bits, "corrupted"), (truncated, "corrupted")):
        bad = tmp_path / "bad.pxz"
        bad.write_bytes(_rebuild(good, edit))
        r = CliRunner().invoke(main, ["decompress", str(bad), "-o", str(tmp_path / "x.png")])
        assert r.exit_code != 0 and expect in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / "x.png").exists()


def test_only_an_adaptive_planes_tiles_may_be_lz_tiles(tmp_path):
    """A whole-plane stream (stored, LZ) or a static tile with the LZ bit is a corrupt stream head; an LZ tile's
    sample beyond its plane's stored width is corruption too (a stored tile could not have held it)."""
    with pytest.raises(container.FormatError, match="stream head"):
        container.unframe(container.frame(b"abc", lz=True))
    tiles = [np.full((4, 4, 1), 200, np.uint8), np.full((4, 4, 1), 3, np.uint8)]
    payloads = {0: lz.encode_tiles(tiles, [0, 1]), 1: b""}
    grid = [(0, 0, 4, 4), (0, 4, 4, 4)]
    assert all(np.array_equal(a, b) for a, b in zip(adaptive_planes._lz_tiles(payloads, grid, 1, 8).values(), tiles))
    with pytest.raises(ValueError, match="stored width"):
        adaptive_planes._lz_tiles(payloads, grid, 1, 7)
