def make_task(:
    pass
