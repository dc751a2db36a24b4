/** Parameter-free modules: dropout and activations. */
import { native } from "../binding";
import { isFloatingDtype } from "../dtype";
import { describe } from "../errors";
import { Tensor, handleOf } from "../tensor";
import { Module } from "./module";

/** Zeroes elements with probability `p` in training mode; identity in eval mode. */
export class Dropout extends Module {
  readonly p: number;
  constructor(p = 0.5) {
    super();
    if (typeof p !== "number" || !(p >= 0 && p <= 1)) throw new RangeError(`p: expected a probability in [0, 1], got ${describe(p)}`);
    this.p = p;
  }
  override forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? x.dropout(this.p, true) : x;
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  override forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** Gaussian error linear unit (exact erf form). */
export class GELU extends Module {
  override forward(x: Tensor): Tensor {
    return x.gelu();
  }
}

/** Hyperbolic tangent. */
export class Tanh extends Module {
  override forward(x: Tensor): Tensor {
    return x.tanh();
  }
}

/** Logistic sigmoid. */
export class Sigmoid extends Module {
  override forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

/** x · sigmoid(x) (PyTorch's `nn.SiLU`, the activation of Llama's MLP). */
export class SiLU extends Module {
  override forward(x: Tensor): Tensor {
    const input = handleOf(x, "input");
    try {
      return new Tensor(native.siluActivation(input));
    } catch (e) {
      // Checked after a failure only: a forward pass pays for no dtype read.
      if (!isFloatingDtype(x.dtype)) throw new TypeError(`SiLU: input: expected a floating-point tensor, got ${x.dtype}`);
      throw e;
    }
  }
}

/** Returns its input unchanged (PyTorch's `nn.Identity`): a placeholder where a layer is optional. */
export class Identity extends Module {
  override forward<T>(x: T): T {
    return x;
  }
}
