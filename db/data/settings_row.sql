-- The single settings row, with the defaults of SPEC 2.

insert into prebuilds.settings (singleton) values (true);
