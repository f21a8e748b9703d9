"""``Int8Linear``: the int8 Linear layer of an INT8 artifact where torchao is missing or too old.

A robot must run an artifact with torch alone, so the arithmetic of torchao 0.18's ``Int8Tensor``
``F.linear`` is written out here in plain torch.
"""

from __future__ import annotations

import torch


def int8_matmul(a_int8: torch.Tensor, b_int8_t: torch.Tensor) -> torch.Tensor:
    """Exact int32 result of ``a_int8 @ b_int8_t`` (``torch._int_mm`` where it runs, else float64)."""
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is not None:
        try:
            return int_mm(a_int8, b_int8_t)
        except Exception:  # noqa: BLE001 - older torch / unsupported shapes on this device
            pass
    # |a*b| <= 2**14 and K < 2**38: float64 accumulation is exact.
    return torch.mm(a_int8.to(torch.float64), b_int8_t.to(torch.float64)).to(torch.int32)


class Int8Linear(torch.nn.Module):
    """Pure-torch int8 Linear with torchao 0.18 ``Int8Tensor``'s arithmetic.

    * weight-only (``activation is None``): ``(x @ w_int8.T.to(x.dtype)) * scale + bias``;
      bit-identical to torchao.
    * dynamic (``int8-dynamic``): per-token (or per-tensor) symmetric int8 quantization of the
      activation (``scale = max(|x|) / 127.5``, ``clamp(round(x * (1/scale)), -128, 127)``),
      exact int32 matmul, then ``* x_scale`` and ``* w_scale`` in the activation dtype: the same
      rounding and order of operations as torchao's CPU path (bit for bit on CPU in our tests; on
      CUDA torchao may use a fused kernel, differences at float rounding level).
    """

    def __init__(self, weight_int8, scale, zero_point, bias, activation, reduce_range=False):
        super().__init__()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", zero_point)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.activation = activation  # None or {"granularity", "mapping", ...}
        self.reduce_range = bool(reduce_range)
        self.out_features, self.in_features = weight_int8.shape

    def extra_repr(self) -> str:
        """Sizes and mode, for ``print(model)``."""
        mode = "dynamic-int8-act" if self.activation else "weight-only"
        return f"in_features={self.in_features}, out_features={self.out_features}, {mode}"

    def dequantize(self) -> torch.Tensor:
        """The FP32 weight this layer stands for."""
        w = self.weight_int8.to(torch.float32)
        if self.weight_zero_point is not None:
            w = w - self.weight_zero_point.to(torch.float32)
        return w * self.weight_scale.to(torch.float32)

    def _weight_int8_centered(self) -> torch.Tensor:
        if self.weight_zero_point is not None and bool((self.weight_zero_point != 0).any()):
            raise RuntimeError("Int8Linear supports symmetric (zero-point 0) weights only")
        return self.weight_int8

    def _quantize_activation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.activation.get("mapping", "symmetric") != "symmetric":
            raise RuntimeError("Int8Linear supports symmetric activation quantization only")
        qmin, qmax = -128, 127
        if self.activation.get("reduce_range"):
            qmin, qmax = qmin // 2, qmax // 2
        if self.activation.get("granularity") == "per_tensor":
            amin, amax = x.amin(), x.amax()
            amin, amax = amin.reshape([1] * x.dim()), amax.reshape([1] * x.dim())
        else:
            amin = x.amin(dim=-1, keepdim=True)
            amax = x.amax(dim=-1, keepdim=True)
        amin = torch.min(amin, torch.zeros_like(amin))
        amax = torch.max(amax, torch.zeros_like(amax))
        amax = torch.max(-amin, amax)
        x_scale = amax / (float(qmax - qmin) / 2)
        x_scale = torch.clamp(x_scale, min=torch.finfo(torch.float32).eps).to(torch.float32)
        xq = torch.clamp(torch.round(x * (1.0 / x_scale)), qmin, qmax).to(torch.int8)
        return xq.reshape(-1, x.shape[-1]), x_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` with the stored int8 weight (and int8 activations when dynamic)."""
        out_dtype = x.dtype
        w = self._weight_int8_centered()
        lead = x.shape[:-1]
        if self.activation is None:
            m = torch.mm(x.reshape(-1, x.shape[-1]), w.t().to(out_dtype))
            y = m * self.weight_scale.to(m.dtype).flatten()
            y = y.reshape(*lead, self.out_features)
        else:
            xq, x_scale = self._quantize_activation(x)
            inter = torch.float32 if x_scale.dtype == torch.half else x_scale.dtype
            s = x_scale.reshape(1, 1).to(inter) if x_scale.numel() == 1 else x_scale.reshape(-1, 1).to(inter)
            c = int8_matmul(xq, w.contiguous().t())
            y = (c.to(inter) * s).to(out_dtype)
            y = (y * self.weight_scale.flatten()).reshape(*lead, y.shape[-1])
        if self.bias is not None:
            y += self.bias
        return y.to(out_dtype)
