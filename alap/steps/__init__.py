"""The pipeline's steps as plain functions of validated params, one module per stage: the DVC stages, the
Prefect flows, ``alap compress`` and the tests call the same functions, and a stage imports only its own step
(so its DVC code deps are what it runs)."""
