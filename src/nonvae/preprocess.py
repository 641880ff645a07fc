"""Split CelebA into two domains by an attribute: ``nonvae preprocess celeba`` writes their list files.

The seed project's command keeps working with the same arguments::

    nonvae preprocess celeba --root ./img_align_celeba --attributes ./list_attr_celeba.txt --dest ./glasses_train

and writes dest/trainA.txt, trainB.txt, testA.txt, testB.txt (A = with the attribute, one image path
per line) plus dest/split.json. See :mod:`nonvae.data.celeba` for the rules and the partition handling.
"""

from __future__ import annotations

import argparse
import logging

from nonvae.data.celeba import DEFAULT_ATTRIBUTE, OFFICIAL_TEST_SIZE, RULES, preprocess_celeba
from nonvae.errors import ConfigError

log = logging.getLogger(__name__)


def cmd_preprocess(args: argparse.Namespace) -> int:
    if args.attribute is not None and args.rule is not None:
        raise ConfigError("give either --attribute or --rule, not both")
    from nonvae.limits import output_folder

    output_folder(args.dest, "--dest")
    summary = preprocess_celeba(args.root, args.attributes, args.dest, attribute=args.attribute, rule=args.rule,
                                partition=args.partition, test_size=args.test_size)
    what = f"rule {summary['rule']}" if summary["rule"] else f"attribute {summary['attribute']}"
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    print(f"split by {what}: {counts} ({summary['excluded']} images in neither domain)")
    log.info("wrote %s/{%s}.txt and split.json", args.dest, ",".join(summary["counts"]))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="split a dataset into two domains (CelebA by an attribute)",
                       description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", default="celeba", choices=["celeba"],
                   help="the dataset (only celeba; may be left out)")
    p.add_argument("--root", required=True, help="folder of aligned images (img_align_celeba)")
    p.add_argument("--attributes", required=True, help="list_attr_celeba.txt")
    p.add_argument("--dest", required=True, help="output folder for trainA.txt, trainB.txt, testA.txt, testB.txt")
    p.add_argument("--attribute", default=None,
                   help=f"split by this attribute column (default {DEFAULT_ATTRIBUTE})")
    p.add_argument("--rule", "--config", dest="rule", default=None, choices=RULES,
                   help="a named split: glasses (Eyeglasses), mouth (Mouth_Slightly_Open), or beard (male, "
                        "no 5 o'clock shadow, mustache/goatee/beard vs clean-shaven)")
    p.add_argument("--partition", default=None,
                   help="list_eval_partition.txt: use CelebA's train (0) / test (2) split; validation (1) "
                        "goes to valA.txt / valB.txt")
    p.add_argument("--test-size", "--num_test_imgs", dest="test_size", type=int, default=None,
                   help=f"test images per domain (default {OFFICIAL_TEST_SIZE}, the first ones as in the "
                        "official code; with --partition: all of partition 2 unless given)")
    p.set_defaults(func=cmd_preprocess)
