-- ARGV: prefix, recipient, up_to ('+inf' = everything). Returns how many entries it removed.
return ack(ARGV[2], ARGV[3])
