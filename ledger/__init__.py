"""perpledger's write side: the event catalogue, the store, the state machine, the writer.

Importing the package first decides whether the mypyc-compiled core or its
pure-Python sources run (ledger.compiled): before any compiled module loads.
"""

from ledger import compiled as _compiled

_compiled.activate()
