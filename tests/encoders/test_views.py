import torch

import pvr.encoders as E


def test_multi_view_frames_are_encoded_view_by_view_and_concatenated():
    enc = E.create("random3")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=g)
    both = torch.cat([a, b], dim=-1)  # (B, H, W, 6): current view + goal view
    out = E.encode(enc, both)
    assert out.shape == (2, 2 * enc.dim_for((32, 32, 3)))
    assert torch.allclose(out, torch.cat([enc(a), enc(b)], dim=1), atol=1e-5)
    assert torch.equal(E.encode(enc, a), enc(a))
    state = E.create("true_state", dim=4)
    x = torch.randn(3, 4)
    assert torch.equal(E.encode(state, x), x)
