"""expertkit: make a small language model an expert in one industry with that business's own data."""

import logging as _logging

__version__ = "0.1.0"

# bitsandbytes' CPU backend (imported by peft and sentence-transformers) warns on import that it cannot
# fetch an optional kernel from the Hugging Face Hub and asks to `pip install kernels`; expertkit never
# fetches code from the Hub, so the advice does not apply and the line only clutters every command.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
