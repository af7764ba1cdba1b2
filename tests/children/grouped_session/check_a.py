def test_uses_the_shared_fixture(trained_model):
    assert trained_model == 1


def test_alone_first():
    pass


def test_alone_second():
    pass
