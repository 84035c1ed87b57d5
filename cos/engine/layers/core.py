"""Layers the net itself relies on: Input (net inputs) and Split (inserted automatically)."""

from ..layer import Layer, register


@register("Input")
class Input(Layer):
    """Tops are the net's inputs; the net owns their blobs, so forward is never called."""

    is_input = True
    has_backward = False

    def reshape(self, bottom_shapes):
        shapes = [tuple(int(d) for d in s.dim) for s in self.param.input_param.shape]
        ntops = len(self.param.top)
        if not shapes:
            return [()] * ntops
        if len(shapes) == 1:
            return shapes * ntops
        if len(shapes) != ntops:
            self.fail(f"input_param has {len(shapes)} shapes for {ntops} tops "
                      "(give none, one, or one per top)")
        return shapes

    def forward(self, bottoms):
        raise RuntimeError("Input layers are not run")


@register("Split")
class Split(Layer):
    """Every top shares the bottom's data; autograd sums the tops' gradients into the bottom."""

    exact_bottoms = 1

    def forward(self, bottoms):
        x = bottoms[0]
        return [x.view_as(x) for _ in self.param.top]
