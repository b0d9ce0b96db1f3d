def f():
    x = compute()
    return 1


def compute():
    return 2
