"""PostgreSQL: the pool (:mod:`.database`), migrations, the records of a call
(:mod:`.records`), and one repository per aggregate (:mod:`.repositories` gathers them).

No SQL lives outside this package. This module imports nothing: importing one of its
modules (say the records) does not load every repository.
"""
