def test_also_uses_it(trained_model):
    assert trained_model == 1


def test_uses_it_again(trained_model):
    assert trained_model


def test_needs_nothing():
    pass
