"""Argument types the benchmark and reference scripts share."""
import argparse
import math


def positive(kind, zero: bool = False):
    """An argparse type: a finite number of `kind` above 0 (or 0 too, with `zero`); argparse
    names the flag it refuses."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        if not (math.isfinite(value) and (value > 0 or zero and value == 0)):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero else 'a positive number'}, not {text}")
        return value
    return parse
