"""`patron keys`: the secret behind pseudonymous customer keys (where it is, rotate it)."""

from __future__ import annotations

HELP = "show where the exposure-key secret is kept, or rotate it (old secrets still match)"


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=("show", "rotate"), help="show | rotate")
    parser.epilog = ("example: patron keys rotate   (new records get keys from the new secret; "
                     "patron forget still matches records keyed with the old ones)")


def run(args) -> int:
    from serving.keys import key_file, load_keyring, rotate

    if args.action == "rotate":
        path = rotate()
        print(f"new current secret in {path} (older ones kept for matching); restart the "
              "service to use it")
        return 0
    ring = load_keyring(None, create=False)
    print(f"secrets: {len(ring.secrets)} (the first keys new records) from {ring.source}; key file "
          f"{key_file()}")
    return 0
