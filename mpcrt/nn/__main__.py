"""`python -m mpcrt.nn`: print the supported layers and functions (generated from the op registry)."""
from mpcrt.nn.ops import supported_markdown

print(supported_markdown())
