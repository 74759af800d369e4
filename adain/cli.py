"""The ``adain`` command line: ``stylize``, ``info``, ``weights import`` and ``train``.

Errors a user can fix (unreadable image, unknown device, bad weights) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from adain_wire.options import COLOR_MODES, PRECISIONS

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adain", description="Arbitrary style transfer with AdaIN.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stylize", help="stylize content images with one or more styles")
    s.add_argument("content", nargs="+", type=Path, help="content image file(s)")
    s.add_argument("--style", action="append", type=Path, required=True, help="style image (repeat for several)")
    s.add_argument("--weights", nargs="+", type=float, help="interpolation weights, one per --style")
    s.add_argument("--alpha", type=float, default=1.0, help="style strength in [0, 1] (default 1)")
    s.add_argument("--preserve-color", choices=COLOR_MODES, default="none")
    s.add_argument("--mask", type=Path, help="label image: value k takes the k-th --style (others keep content)")
    s.add_argument("--size", type=int, default=512, help="content's shorter side in pixels; 0 keeps it (default 512)")
    s.add_argument("--style-size", type=int, default=512, help="style's shorter side in pixels; 0 keeps it")
    s.add_argument("--tile", type=int, default=0, help="process in tiles of this many pixels (0: whole image)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    s.add_argument("--precision", default="auto", choices=PRECISIONS)
    s.add_argument("--decoder", type=Path, help="decoder weights (default: the shipped decoder)")
    s.add_argument("--encoder", type=Path, help="encoder weights matching --decoder (e.g. imported ones)")
    s.add_argument("-o", "--output", type=Path, required=True, help="output file (one content) or folder")

    i = sub.add_parser("info", help="print the weights, device and precision that would be used")
    i.add_argument("--device", default="auto")
    i.add_argument("--precision", default="auto", choices=PRECISIONS)
    i.add_argument("--decoder", type=Path)
    i.add_argument("--encoder", type=Path)

    w = sub.add_parser("weights", help="manage weights files")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    imp = wsub.add_parser("import", help="convert the published PyTorch-port vgg_normalised.pth + decoder.pth")
    imp.add_argument("--vgg", type=Path, required=True, help="vgg_normalised.pth")
    imp.add_argument("--decoder", type=Path, required=True, help="decoder.pth")
    imp.add_argument("-o", "--output", type=Path, required=True, help="folder for encoder/decoder.safetensors")

    t = sub.add_parser("train", help="train a decoder (paper §6.2); resumes from --checkpoint")
    from adain.train import add_train_arguments

    add_train_arguments(t)
    return p


def _load_model(args: argparse.Namespace):
    from adain.model import StyleTransfer

    if args.decoder is None:
        if args.encoder is not None:
            raise SystemExit("adain: error: --encoder needs --decoder")
        return StyleTransfer.load_default(device=args.device, precision=args.precision)
    return StyleTransfer.load(args.decoder, args.encoder, device=args.device, precision=args.precision)


def _stylize(args: argparse.Namespace) -> int:
    from adain.errors import InputError
    from adain.images import load_image, load_label_map, save_image
    from adain.model import Region
    from adain.progress import Progress

    if not 0.0 <= args.alpha <= 1.0:
        raise InputError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.weights is not None and len(args.weights) != len(args.style):
        raise InputError(f"--weights needs one value per --style: {len(args.style)} styles, {len(args.weights)} weights")
    if args.mask is not None and args.weights is not None:
        raise InputError("--weights interpolates styles over the whole image; it cannot be combined with --mask")
    if args.size < 0 or args.tile < 0:
        raise InputError("--size and --tile must be >= 0")
    several = len(args.content) > 1
    if several and args.output.suffix:
        raise InputError(f"several content images need an output folder, got file name {args.output}")
    model = _load_model(args)
    styles = [model.encode_style(load_image(p, args.style_size)) for p in args.style]
    if several:
        args.output.mkdir(parents=True, exist_ok=True)
    with Progress(len(args.content), "stylize") as bar:
        for path in args.content:
            content = load_image(path, args.size)
            if args.mask is not None:
                labels = load_label_map(args.mask, (content.shape[1], content.shape[2]))
                regions = [Region([s], alpha=args.alpha) for s in styles]
                out = model.stylize(content, regions=regions, masks=labels, preserve_color=args.preserve_color,
                                    tile=args.tile or None)  # fmt: skip
            else:
                out = model.stylize(content, styles, args.alpha, weights=args.weights,
                                    preserve_color=args.preserve_color, tile=args.tile or None)  # fmt: skip
            dest = args.output / f"{path.stem}.png" if several else args.output
            if not several and dest.parent and not dest.parent.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
            save_image(out, dest)
            bar.update(1, path.name)
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    model = _load_model(args)
    for key, value in model.info().items():
        print(f"{key + ':':20} {value}")
    print(f"{'torch:':20} {torch.__version__}, {torch.get_num_threads()} CPU threads")
    return 0


def _weights_import(args: argparse.Namespace) -> int:
    from adain.weights import import_published

    enc, dec = import_published(args.vgg, args.decoder, args.output)
    print(f"wrote {enc} and {dec}\nuse them with: adain stylize ... --decoder {dec} --encoder {enc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from adain.errors import AdainError

    try:
        if args.command == "stylize":
            return _stylize(args)
        if args.command == "info":
            return _info(args)
        if args.command == "weights":
            return _weights_import(args)
        if args.command == "train":
            from adain.train import run_training

            return run_training(args)
    except AdainError as e:
        print(f"adain: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("adain: interrupted", file=sys.stderr)
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
