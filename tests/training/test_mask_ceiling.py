import numpy as np

from training.mask_ceiling import fit_low_res, main


def test_grid_aligned_square_fits_exactly_and_a_pixel_checkerboard_does_not():
    masks = np.zeros((2, 64, 64), bool)
    masks[0, 16:48, 8:40] = True  # edges on the 4 px cells of a 16x16 grid over 64 px
    yy, xx = np.mgrid[:64, :64]
    masks[1] = ((yy + xx) % 2 == 0) & (yy >= 20) & (yy < 44) & (xx >= 20) & (xx < 44)  # 1 px checker
    ious = fit_low_res(masks, image_size=64, low_res=16, steps=100)
    assert ious[0] == 1.0
    assert ious[1] < 0.9
    finer = fit_low_res(masks[1:], image_size=64, low_res=64, steps=100)
    assert finer[0] > ious[1]  # a grid as fine as the pixels represents it better


def test_cli_reports_json(capsys):
    assert main(["--split", "val", "--num-images", "1", "--image-size", "64", "--low-res", "16", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert '"miou"' in out and '"by_level_miou"' in out
