"""deepx_opt: plan deep-learning inference on heterogeneous, resource-limited devices.

The path of one request (see DESIGN): ``load_onnx`` → ``candidates`` → ``build_problem`` → ``solve`` →
``execute``. Each stage is a plain function over plain data that can be saved and reloaded.
"""

from deepx_opt.errors import DeepxError

__version__ = "0.1.0"

__all__ = ["DeepxError", "__version__"]
