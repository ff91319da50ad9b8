"""The fakes a test (or a lab) runs instead of real servers: an authoritative DNS (``dns``) and
SIP servers (``sip``), scripted with one rule grammar (``rules``), recording what they see into
one shared ``record.Recorder`` that ``ladder`` draws. They build on ``sipcore`` and never import
the phone.
"""
